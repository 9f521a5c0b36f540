"""``baselines/``: human-edited limits, blessed baseline values and (later) measured noise.

Why TOML files in the repository: limits and baselines are decisions, so they are
reviewed in pull requests like code. ``limits.toml`` is written by people;
``blessed.toml`` by ``python -m scheduler bless <commit>``; ``noise.toml`` holds the
noise-derived per-benchmark thresholds and the "unstable" verdict (written by
``python -m scheduler calibrate``). ``limits.toml`` also holds the smallest absolute change
worth an alert per series (``[[min_change]]``). The format is documented in
baselines/README.md. Writing uses a small dedicated writer (the shapes are fixed and flat,
no third-party dependency); reading uses tomllib.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import tomllib
from pathlib import Path
from typing import Any

from ..policy.criteria import Baseline, Baselines, Limit, MinChange, Noise
from ..results import ResultFile


class BaselinesError(Exception):
    """A baselines file is unreadable or has an invalid entry."""


def _load_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise BaselinesError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise BaselinesError(f"{path}: cannot read: {exc}") from None


def _entries(path: Path, data: dict[str, Any], table: str,
             siblings: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    unknown = set(data) - {table, *siblings}
    if unknown:
        expected = " and ".join(f"[[{t}]]" for t in (table, *siblings))
        raise BaselinesError(f"{path}: unknown top-level key(s) {sorted(unknown)}; "
                             f"expected only {expected} entries")
    entries = data.get(table, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise BaselinesError(f"{path}: {table} must be an array of tables ([[{table}]])")
    return entries


def _get(path: Path, i: int, entry: dict[str, Any], key: str, kind: type | tuple[type, ...],
         default: Any = None, *, table: str = "entry") -> Any:
    if key not in entry:
        if default is None:
            raise BaselinesError(f"{path}: {table} #{i + 1}: missing {key!r}")
        return default
    value = entry[key]
    if isinstance(value, bool) and kind is not bool:
        raise BaselinesError(f"{path}: {table} #{i + 1}: {key!r} has the wrong type")
    if not isinstance(value, kind):
        raise BaselinesError(f"{path}: {table} #{i + 1}: {key!r} has the wrong type "
                             f"({type(value).__name__})")
    return value


def load_baselines(directory: Path) -> Baselines:
    """Read limits.toml, blessed.toml and noise.toml (each optional)."""
    limits: list[Limit] = []
    path = directory / "limits.toml"
    data = _load_toml(path)
    for i, e in enumerate(_entries(path, data, "limit", ("min_change",))):
        pattern = _pattern_entry(path, i, e, "max")
        limits.append(Limit(pattern=pattern, max=float(_get(path, i, e, "max", (int, float))),
                            machine=_get(path, i, e, "machine", str, ""),
                            profile=_get(path, i, e, "profile", str, ""),
                            note=_get(path, i, e, "note", str, "")))
    min_changes: list[MinChange] = []
    for i, e in enumerate(_entries(path, data, "min_change", ("limit",))):
        pattern = _pattern_entry(path, i, e, "value", table="min_change")
        value = float(_get(path, i, e, "value", (int, float), table="min_change"))
        if value < 0:
            raise BaselinesError(f"{path}: min_change #{i + 1}: 'value' must be >= 0")
        min_changes.append(MinChange(
            pattern=pattern, value=value,
            machine=_get(path, i, e, "machine", str, "", table="min_change"),
            profile=_get(path, i, e, "profile", str, "", table="min_change"),
            note=_get(path, i, e, "note", str, "", table="min_change")))
    baselines: list[Baseline] = []
    path = directory / "blessed.toml"
    for i, e in enumerate(_entries(path, _load_toml(path), "baseline")):
        baselines.append(Baseline(
            benchmark=_get(path, i, e, "benchmark", str),
            machine=_get(path, i, e, "machine", str),
            profile=_get(path, i, e, "profile", str),
            value=float(_get(path, i, e, "value", (int, float))),
            commit=_get(path, i, e, "commit", str),
            blessed_at=_get(path, i, e, "blessed_at", str, ""),
            unit=_get(path, i, e, "unit", str, "")))
    noise: list[Noise] = []
    path = directory / "noise.toml"
    for i, e in enumerate(_entries(path, _load_toml(path), "noise")):
        noise.append(Noise(
            benchmark=_get(path, i, e, "benchmark", str),
            threshold=float(_get(path, i, e, "threshold", (int, float))),
            machine=_get(path, i, e, "machine", str, ""),
            profile=_get(path, i, e, "profile", str, ""),
            unstable=_get(path, i, e, "unstable", bool, False)))
    return Baselines(directory, tuple(limits), tuple(baselines), tuple(noise),
                     tuple(min_changes))


def _pattern_entry(path: Path, i: int, e: dict[str, Any], number: str,
                   table: str = "entry") -> str:
    """The ``benchmark`` regex of a limits.toml entry, after checking its keys."""
    pattern = _get(path, i, e, "benchmark", str, table=table)
    try:
        re.compile(pattern)
    except re.error as exc:
        raise BaselinesError(f"{path}: {table} #{i + 1}: bad regex {pattern!r}: {exc}") \
            from None
    unknown = set(e) - {"benchmark", number, "machine", "profile", "note"}
    if unknown:
        raise BaselinesError(f"{path}: {table} #{i + 1}: unknown key(s) {sorted(unknown)}")
    return pattern


# ---- writing ----------------------------------------------------------------------------

def toml_value(value: Any) -> str:
    """Serialize the scalar types used in baselines files."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BaselinesError(f"cannot write non-finite value {value!r}")
        return repr(value)
    if isinstance(value, str):
        out = value.replace("\\", "\\\\").replace('"', '\\"')
        out = "".join(c if c >= " " or c == "\t" else f"\\u{ord(c):04x}" for c in out)
        return f'"{out}"'
    raise BaselinesError(f"cannot write {type(value).__name__} to TOML")


def dump_tables(header: str, table: str, entries: list[dict[str, Any]]) -> str:
    """An array of flat tables with a comment header."""
    lines = [f"# {ln}" if ln else "#" for ln in header.splitlines()]
    for e in entries:
        lines += ["", f"[[{table}]]"]
        lines += [f"{k} = {toml_value(v)}" for k, v in e.items() if v is not None]
    return "\n".join(lines) + "\n"


BLESSED_HEADER = """Blessed baseline values, written by `python -m scheduler bless <commit>`.
Review changes in pull requests. A new result slower than its baseline by more than the
benchmark's threshold is a regression. See baselines/README.md."""


def bless(directory: Path, result: ResultFile, profile: str, machine: str) -> list[Baseline]:
    """Write every measured value of ``result`` as the blessed baseline for its series,
    replacing earlier blessings of the same (benchmark, machine, profile)."""
    current = load_baselines(directory)
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    new = [Baseline(benchmark=m.id, machine=machine, profile=profile, value=float(m.value),
                    commit=result.commit, blessed_at=now, unit=m.unit)
           for m in result.measurements if m.ok and m.value is not None]
    if not new:
        raise BaselinesError(f"commit {result.commit[:8]} has no successful measurements")
    keys = {(b.benchmark, b.machine, b.profile) for b in new}
    kept = [b for b in current.baselines if (b.benchmark, b.machine, b.profile) not in keys]
    allb = sorted(kept + new, key=lambda b: (b.profile, b.machine, b.benchmark))
    text = dump_tables(BLESSED_HEADER, "baseline", [
        {"benchmark": b.benchmark, "machine": b.machine, "profile": b.profile,
         "value": b.value, "unit": b.unit or None, "commit": b.commit,
         "blessed_at": b.blessed_at or None} for b in allb])
    tomllib.loads(text)  # never write a file we could not read back
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "blessed.toml.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(directory / "blessed.toml")
    return new
