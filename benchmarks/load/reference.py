"""The reference server of the host-corrected figures, and the table that scales them.

A **host-corrected** figure is what the commit would have measured on the calibration
host: per block of interleaved round pairs (:mod:`duet`), the commit's figure divided
by the reference's, times a fixed *nominal* value of the reference for that figure. The
host's state (other processes on the core, steal time) hits both rounds of a pair alike
and cancels in the ratio; the nominal value only turns the ratio back into milliseconds or
microseconds, so the site still reads in the figure's own unit. The nominal values are
constants (``reference.toml`` next to this module, committed): re-measuring them in
every run would divide the host's state back in.

The reference is the toolserver at a fixed git tree (``[calibration] tree`` in the
table: the tree id of ``src/toolserver`` that was calibrated), extracted once from
this checkout's repository into ``.asv/reference/`` and run on the instrument's own
interpreter: the same kind of work as every commit under test, and code that never
changes between compared commits, nor when this checkout moves on. Where the tree
is not in the repository (a copy without its history), the checkout's own
``src/toolserver`` stands in and the result says so (``reference.stale``).

``python -m benchmarks.load.reference --calibrate`` measures the nominal values on this
machine and rewrites the table (docs/BENCHMARKS.md, "Host-corrected figures").
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import math
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import environment
from .resources import ResourceSampler
from .server_process import REPO_ROOT, ServerProcess

#: The committed calibration table.
TABLE = Path(__file__).with_name("reference.toml")
#: The figures corrected per scenario (``<phase>.<figure>`` in the result document).
FIGURES: dict[str, tuple[str, ...]] = {
    "load_performance": ("p50_ms", "p95_ms", "p99_ms", "us_per_msg"),
    "end_to_end_latency": ("p50_ms", "p95_ms", "p99_ms"),
}
CALIBRATE_HINT = ("run `python -m benchmarks.load.reference --calibrate` on the calibration "
                  "host (docs/BENCHMARKS.md, \"Host-corrected figures\")")


class MissingNominal(LookupError):
    """A figure has no nominal value in the table: its host-corrected figure cannot exist."""


@dataclass(frozen=True)
class Calibration:
    """The nominal values of the reference, per scenario and ``<phase>.<figure>``."""

    path: Path
    tree: str | None = None
    nominal: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)
    #: why the table could not be read ("" when it could)
    error: str = ""

    def value(self, scenario: str, key: str) -> float:
        """The nominal value of ``key`` (``clients_10.p95_ms``), or MissingNominal."""
        if self.error:
            raise MissingNominal(f"no nominal value for {scenario} {key}: {self.error}; "
                                 f"{CALIBRATE_HINT}")
        value = self.nominal.get(scenario, {}).get(key)
        if value is None:
            raise MissingNominal(
                f"no nominal value for {scenario} {key} in {self.path}: its host-corrected "
                f"figure needs one (a load point the table was not calibrated for); "
                f"{CALIBRATE_HINT}")
        return value


def load_calibration(path: Path = TABLE) -> Calibration:
    """Read the table; never raises (an unreadable table makes every lookup say why)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Calibration(path, error=f"{path} does not exist")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return Calibration(path, error=f"cannot read {path}: {exc}")
    meta = data.get("calibration", {})
    raw = data.get("nominal", {})
    nominal: dict[str, dict[str, float]] = {}
    bad = []
    for scenario, entries in raw.items() if isinstance(raw, dict) else ():
        if not isinstance(entries, dict):
            bad.append(scenario)
            continue
        for key, value in entries.items():
            if isinstance(value, int | float) and not isinstance(value, bool) \
                    and math.isfinite(value) and value > 0:
                nominal.setdefault(scenario, {})[key] = float(value)
            else:
                bad.append(f"{scenario}.{key}")
    if bad:  # a corrupt entry is reported, not used; the others still count
        meta = {**meta, "ignored_entries": bad}
    tree = meta.get("tree") if isinstance(meta.get("tree"), str) else None
    return Calibration(path, tree=tree, nominal=nominal, meta=meta)


# ---- the arithmetic (pure) -------------------------------------------------------------

def paired_ratios(commit: Sequence[float | None],
                  reference: Sequence[float | None]) -> list[float | None]:
    """commit/reference per block; ``None`` where either side measured nothing."""
    if len(commit) != len(reference):
        raise ValueError(f"{len(commit)} commit blocks against {len(reference)} reference "
                         "blocks: they must line up")
    return [c / r if c is not None and r is not None and r > 0 else None
            for c, r in zip(commit, reference, strict=True)]


def corrected_samples(commit: Sequence[float | None], reference: Sequence[float | None],
                      nominal: float) -> list[float]:
    """The host-corrected samples: nominal × commit/reference of every complete pair."""
    return [round(nominal * r, 6) for r in paired_ratios(commit, reference) if r is not None]


def correct_phase(scenario: str, phase: str, commit: Sequence[Mapping[str, Any]],
                  reference: Sequence[Mapping[str, Any]],
                  calibration: Calibration) -> dict[str, dict[str, Any]]:
    """Per figure of ``scenario``: nominal, block ratios, samples and their median, or
    ``{"missing": why}`` when the table has no nominal value for it."""
    out: dict[str, dict[str, Any]] = {}
    for fig in FIGURES.get(scenario, ()):
        try:
            nominal = calibration.value(scenario, f"{phase}.{fig}")
        except MissingNominal as exc:
            out[fig] = {"missing": str(exc)}
            continue
        c = [r.get(fig) for r in commit]
        ref = [r.get(fig) for r in reference]
        ratios = paired_ratios(c, ref)
        samples = corrected_samples(c, ref, nominal)
        out[fig] = {
            "nominal": nominal,
            "ratios": [round(x, 5) if x is not None else None for x in ratios],
            "samples": samples,
            "value": round(statistics.median(samples), 6) if samples else None,
        }
    return out


# ---- where the reference's code comes from ---------------------------------------------

def _git(repo: Path, *args: str, binary: bool = False) -> Any:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False,
                          text=not binary)
    return proc.stdout if proc.returncode == 0 else None


def checkout_tree(repo: Path = REPO_ROOT) -> str | None:
    """The git tree id of ``src/toolserver`` at this checkout's HEAD (None: not git)."""
    out = _git(repo, "rev-parse", "HEAD:src/toolserver")
    return out.strip() if out else None


def source_dir(calibration: Calibration, repo: Path = REPO_ROOT) -> tuple[Path, dict[str, Any]]:
    """The directory to put first on the reference server's PYTHONPATH, and what it is.

    The calibrated tree, extracted once (atomically, so concurrent runs agree) into
    ``.asv/reference/<tree>/``; the checkout's ``src`` when the tree is not available.
    """
    tree = calibration.tree
    if tree and _git(repo, "cat-file", "-e", f"{tree}^{{tree}}") is not None:
        for base in (repo / ".asv" / "reference", Path(tempfile.gettempdir()) /
                     "toolserver-reference"):
            dest = base / tree[:16]
            try:
                if not (dest / "toolserver" / "__init__.py").is_file():
                    _extract(repo, tree, dest)
            except OSError:
                continue
            return dest, {"source": "tree", "tree": tree, "path": str(dest), "stale": False}
    why = (f"the calibrated tree {tree[:12]} of src/toolserver is not in {repo}" if tree
           else f"the table {calibration.path} names no calibrated tree")
    return repo / "src", {
        "source": "checkout", "tree": checkout_tree(repo), "path": str(repo / "src"),
        "stale": True,
        "warning": f"{why}: the reference is this checkout's src/toolserver, which the "
                   "nominal values were not measured with (host-corrected figures may be "
                   f"off scale); {CALIBRATE_HINT}"}


def _extract(repo: Path, tree: str, dest: Path) -> None:
    data = _git(repo, "archive", "--format=tar", tree, binary=True)
    if data is None:
        raise OSError(f"git archive {tree} failed")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(tmp / "toolserver", filter="data")
        try:
            os.replace(tmp, dest)
        except OSError:
            if not (dest / "toolserver" / "__init__.py").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- the server of one run -------------------------------------------------------------

@dataclass
class Reference:
    """The reference server of one run, the table its blocks are scaled by, its origin."""

    server: ServerProcess
    calibration: Calibration
    scenario: str
    source: dict[str, Any]
    sampler: ResourceSampler = field(init=False)

    def __post_init__(self) -> None:
        # read at round boundaries only, no sampling thread
        self.sampler = ResourceSampler(self.server.pid)

    @property
    def url(self) -> str:
        return self.server.url

    def describe(self) -> dict[str, Any]:
        """The result document's ``reference`` section (without the missing entries)."""
        return {"url": self.url, "command": self.server.command(),
                "python": self.server.python, **self.source,
                "table": str(self.calibration.path),
                "table_error": self.calibration.error or None,
                "calibrated": {k: v for k, v in self.calibration.meta.items()
                               if k != "command"} or None}


# ---- calibration -----------------------------------------------------------------------

def calibration_points() -> dict[str, dict[str, str]]:
    """``--set`` overrides covering every load point of every profile (union)."""
    from . import profiles

    def union(scenario: str, name: str) -> str:
        seen: set[Any] = set()
        for params in profiles.TABLE[scenario].values():
            seen.update(getattr(params, name))
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in sorted(seen))

    return {"load_performance": {"clients": union("load_performance", "clients")},
            "end_to_end_latency": {"rates": union("end_to_end_latency", "rates"),
                                   "tools": ",".join(profiles.EndToEndLatency().tools)}}


def nominal_from_runs(runs: Sequence[Mapping[str, Sequence[float]]]) -> dict[str, float]:
    """The nominal value per figure: median over runs of each run's median block (pure).

    ``runs``: per run, ``<phase>.<figure>`` -> the reference's per-block values.
    """
    per_key: dict[str, list[float]] = {}
    for run in runs:
        for key, values in run.items():
            vals = [v for v in values if v is not None]
            if vals:
                per_key.setdefault(key, []).append(statistics.median(vals))
    return {k: round(statistics.median(v), 6) for k, v in sorted(per_key.items())}


def reference_blocks(doc: Mapping[str, Any]) -> dict[str, list[float]]:
    """``<phase>.<figure>`` -> the reference's per-block values, from a result document."""
    out: dict[str, list[float]] = {}
    for phase in doc.get("phases", []):
        blocks = phase.get("duet", {}).get("reference", {}).get("blocks", [])
        for fig in FIGURES.get(doc.get("scenario", ""), ()):
            out[f"{phase['name']}.{fig}"] = [b[fig] for b in blocks if b.get(fig) is not None]
    return out


def write_table(path: Path, meta: Mapping[str, Any],
                nominal: Mapping[str, Mapping[str, float]]) -> None:
    """Write the TOML table (atomically; a small writer: the stdlib reads TOML only)."""
    def lit(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [
        "# Nominal figures of the reference server: host-corrected value = nominal x",
        "# commit/reference of each block of round pairs (benchmarks/load/duet.py).",
        "# Written by `python -m benchmarks.load.reference --calibrate`; do not edit by hand.",
        "# Recalibrating rescales every host-corrected series (docs/BENCHMARKS.md).",
        "", "[calibration]"]
    lines += [f"{k} = {lit(v)}" for k, v in meta.items()]
    for scenario in sorted(nominal):
        lines += ["", f"[nominal.{scenario}]"]
        lines += [f'"{k}" = {lit(v)}' for k, v in sorted(nominal[scenario].items())]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)


def calibrate(*, runs: int, profile: str, table: Path, repo: Path = REPO_ROOT,
              say: Any = print) -> dict[str, dict[str, float]]:
    """Measure the reference ``runs`` times per scenario (commit = reference) and write
    the table; returns the nominal values."""
    from .api import run_scenario  # the API imports this module

    tree = checkout_tree(repo)
    if tree is None:
        raise SystemExit(f"calibrate: {repo} is not a git checkout with src/toolserver")
    dirty = _git(repo, "status", "--porcelain", "--", "src/toolserver")
    if dirty:
        raise SystemExit("calibrate: src/toolserver has uncommitted changes; the reference "
                         "is a committed tree (commit or stash them first)")
    # the table being written names the tree, so this run's reference is that tree
    pending = Calibration(table, tree=tree)
    src, _ = source_dir(pending, repo)
    points = calibration_points()
    measured: dict[str, list[dict[str, list[float]]]] = {s: [] for s in FIGURES}
    for i in range(runs):
        for scenario in FIGURES:
            say(f"calibrate: run {i + 1}/{runs} {scenario} ({profile} rounds)")
            doc = run_scenario(scenario, profile, server_python=sys.executable,
                               server_pythonpath=[str(src)], overrides=points[scenario],
                               calibration=pending)
            measured[scenario].append(reference_blocks(doc))
    nominal = {s: nominal_from_runs(r) for s, r in measured.items()}
    versions = environment.versions()
    machine = environment.machine()
    meta = {
        "tree": tree,
        "commit": (_git(repo, "rev-parse", "HEAD") or "").strip(),
        "date": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
        "host": machine.get("hostname", ""), "cpu_model": machine.get("cpu_model", ""),
        "cpu_count": machine.get("cpu_count", 0),
        "python": versions.get("python", ""), "websockets": versions.get("websockets", ""),
        "uvloop": versions.get("uvloop") or "", "runs": runs, "profile": profile,
        "command": f"python -m benchmarks.load.reference --calibrate --runs {runs}"
                   + (f" --profile {profile}" if profile != "quick" else ""),
    }
    write_table(table, meta, nominal)
    for scenario, values in nominal.items():
        for key, value in values.items():
            spread = [statistics.median(r[key]) for r in measured[scenario] if r.get(key)]
            ratio = max(spread) / min(spread) if spread and min(spread) > 0 else math.nan
            say(f"  {scenario:<20} {key:<24} {value:>12.4f}   runs max/min {ratio:.3f}")
    say(f"wrote {table}")
    return nominal


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.load.reference``: show or recalibrate the table."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.load.reference",
        description="The reference server of the host-corrected figures and its "
                    "calibration table. Without --calibrate: print the table and where the "
                    "reference's code comes from.")
    ap.add_argument("--calibrate", action="store_true",
                    help="measure the reference's nominal figures on this machine and "
                         "rewrite the table (pins the reference to src/toolserver at HEAD)")
    ap.add_argument("--runs", type=int, default=5,
                    help="runs per scenario (default %(default)s; each about 2.5 min)")
    ap.add_argument("--profile", default="quick", choices=("smoke", "quick", "full"),
                    help="round settings to calibrate with (default %(default)s: the "
                         "pre-merge profile's)")
    ap.add_argument("--table", type=Path, default=TABLE,
                    help="the table to read or write (default %(default)s)")
    args = ap.parse_args(argv)
    if args.calibrate:
        if args.runs < 1:
            ap.error("--runs must be at least 1")
        environment.raise_nofile()
        calibrate(runs=args.runs, profile=args.profile, table=args.table)
        return 0
    cal = load_calibration(args.table)
    if cal.error:
        print(cal.error, file=sys.stderr)
        return 1
    _, info = source_dir(cal)
    print(f"table {cal.path}: {sum(len(v) for v in cal.nominal.values())} nominal values")
    for k, v in cal.meta.items():
        print(f"  {k} = {v}")
    print(f"reference source: {info['source']} {info['path']}"
          + (f"\nwarning: {info['warning']}" if info.get("warning") else ""))
    for scenario, values in sorted(cal.nominal.items()):
        for key, value in sorted(values.items()):
            print(f"  {scenario:<20} {key:<24} {value:>12.4f}")
    return 0


if __name__ == "__main__":
    # run the imported module's main: run as __main__, this file's classes would be
    # other classes than the ones the rest of the instrument imports and catches
    from benchmarks.load import reference

    sys.exit(reference.main())
