"""Glue between asv and the instrument: run one scenario, hand its figures to asv.

asv imports this module inside the environment of the commit being measured,
which holds only the server's runtime dependencies, so it uses the standard
library alone. The measuring itself happens in another process:

* the **server** runs from this environment's interpreter (``sys.executable``),
  so the commit under test is the one asv installed;
* the **instrument** (``benchmarks/load``) runs from a fixed interpreter, the
  project's own ``.venv`` (or ``BENCH_INSTRUMENT_PYTHON``), so the load
  generator, its ``websockets`` client and its statistics are identical for
  every commit being compared.

A scenario runs once per ``asv run`` and environment, in ``setup_cache``; every
figure is then its own ``track_`` benchmark that reads the cached result. Each
scenario class defines its own ``setup_cache``: asv keys the cache by the
function's source file and line, so a shared factory would make every class
read the same (first) scenario's result. A
figure is returned to asv as ``{"samples": [...], "number": 1}``: asv_runner
0.3.x passes such a dict through as a timing-style result, so asv stores the
samples, computes the median and a 99 % confidence interval, and ``asv
compare`` / ``asv continuous`` judge significance with a Mann-Whitney U test
(p < 0.002, which needs at least 7 samples a side) instead of a bare ratio.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: The repository holding this suite (the working tree asv imports it from).
ROOT = Path(__file__).resolve().parent.parent

#: Profiles: smoke (CI, seconds), quick (pre-merge), full (nightly, the plan's durations).
PROFILES = ("smoke", "quick", "full")


def profile() -> str:
    """The profile selected with ``BENCH_PROFILE`` (default ``quick``)."""
    name = os.environ.get("BENCH_PROFILE", "quick").strip() or "quick"
    if name not in PROFILES:
        raise ValueError(f"BENCH_PROFILE={name!r}: expected one of {', '.join(PROFILES)}")
    return name


def instrument_python() -> str:
    """The pinned interpreter that runs the load generator.

    Never the asv environment's interpreter: that one changes with the commit
    (its ``websockets`` is whatever the commit pins), and the instrument must not.
    """
    explicit = os.environ.get("BENCH_INSTRUMENT_PYTHON")
    candidates = [Path(explicit)] if explicit else [ROOT / ".venv" / "bin" / "python"]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    raise RuntimeError(
        f"no instrument interpreter: looked for {', '.join(map(str, candidates))}; "
        "create the project's venv (see README) or set BENCH_INSTRUMENT_PYTHON"
    )


def progress_target() -> str | None:
    """Where the instrument's progress lines go while asv runs a scenario.

    asv keeps a benchmark's output until the benchmark is over (then shows it with
    ``-e``), so live progress needs its own way out: ``BENCH_PROGRESS_FILE`` (the
    scheduler points it at a file it follows into its log; ``none`` switches progress
    off), else the terminal asv was started from (``/dev/tty``), else nowhere.
    """
    explicit = os.environ.get("BENCH_PROGRESS_FILE")
    if explicit is not None:
        return None if explicit.strip().lower() in ("", "none", "off") else explicit
    try:
        with open("/dev/tty", "a"):
            return "/dev/tty"
    except OSError:  # no controlling terminal (a daemon, CI)
        return None


def keep_document(scenario: str, source: Path) -> None:
    """Copy the instrument's document to ``BENCH_RESULTS_DIR/<scenario>.json`` when set
    (the scheduler keeps every run's documents: asv stores only the tracked figures)."""
    folder = os.environ.get("BENCH_RESULTS_DIR")
    if not folder:
        return
    import shutil

    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target / f"{scenario}.json")


def run_scenario(scenario: str, *, extra_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run one scenario of the instrument against this environment's server.

    Returns the instrument's JSON document. Progress lines (phase, elapsed and
    expected time) go where :func:`progress_target` says, live.
    """
    progress = progress_target()
    progress_args = ["--progress", os.environ.get("BENCH_PROGRESS_S", "5"),
                     "--progress-file", progress] if progress else ["--progress", "0"]
    return run_instrument("benchmarks.load", "--scenario", scenario, "--quiet",
                          *progress_args, *extra_args, keep_as=scenario)


def run_instrument(module: str, *args: str, keep_as: str | None = None) -> dict[str, Any]:
    """``python -m module --profile P --server-python <this env> --json F ARGS`` in the
    instrument's interpreter; returns the JSON document it wrote (and keeps it as
    ``keep_as``, see :func:`keep_document`)."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [instrument_python(), "-m", module, "--profile", profile(),
               "--server-python", sys.executable, "--json", str(out), *args]
        env = dict(os.environ)
        # asv puts its environment first on PATH and sets VIRTUAL_ENV; the
        # instrument must not inherit either, nor a PYTHONPATH.
        env.pop("VIRTUAL_ENV", None)
        env.pop("PYTHONPATH", None)
        started = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
                              preexec_fn=_die_with_parent)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(
                f"instrument failed (exit {proc.returncode}) after "
                f"{time.monotonic() - started:.1f} s: {' '.join(cmd)}\n{proc.stdout[-4000:]}"
            )
        document: dict[str, Any] = json.loads(out.read_text())
        if keep_as:
            keep_document(keep_as, out)
    return document


def _die_with_parent() -> None:
    """In the instrument's process before exec: SIGTERM it if this benchmark process
    dies (asv's timeout kills benchmark processes), so no load keeps running."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def samples(values: list[float]) -> dict[str, Any] | float:
    """The value asv_runner hands on with full statistics.

    An empty or all-NaN list becomes NaN, which asv records as "skipped"
    rather than as a failure or a misleading zero.
    """
    clean = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not clean:
        return math.nan
    return {"samples": clean, "number": 1}


def figure(result: dict[str, Any], name: str) -> dict[str, Any] | float:
    """One figure of a scenario result, as asv samples.

    ``metric_samples`` holds the per-window repeats of a figure (several
    measurement windows per phase, and several server processes where the
    profile asks for them); a figure measured only once falls back to its
    single value in ``metrics``.
    """
    repeated = result.get("metric_samples", {}).get(name)
    if repeated:
        return samples(repeated)
    value = result.get("metrics", {}).get(name)
    return samples([value]) if value is not None else math.nan


def corrected_figure(result: dict[str, Any], name: str) -> dict[str, Any] | float:
    """The host-corrected figure of ``<phase>.<figure>``, as asv samples (one a round pair).

    The instrument ran the phase as a duet against its reference server and scaled each
    pair's commit/reference ratio by the figure's nominal value (benchmarks/load/
    reference.py). A figure the calibration table has no nominal value for raises with
    the instrument's message (asv records the benchmark as failed and shows why), never
    a silent fall-back to the raw figure, which would make the series jump; a phase
    that was not measured (a client count the profile does not run) is skipped (NaN).
    """
    phase, _, fig = name.partition(".")
    values = result.get("metric_samples", {}).get(f"{phase}.corrected_{fig}")
    if values:
        return samples(values)
    missing = (result.get("reference") or {}).get("missing", {}).get(name)
    if missing:
        raise RuntimeError(missing)
    value = result.get("metrics", {}).get(f"{phase}.corrected_{fig}")
    return samples([value]) if value is not None else math.nan

