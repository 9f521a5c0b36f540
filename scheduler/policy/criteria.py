"""What a series is held to, as data: the plan's limits, the smallest change worth an
alert, blessed baselines and measured noise, with the rule that picks the entry for a
series on a machine and profile (the most specific wins). Loaded from and written to
``baselines/*.toml`` by :mod:`scheduler.store.baselines`; judged by :mod:`scheduler.policy`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar


@dataclass(frozen=True)
class Limit:
    """An absolute criterion: the benchmark's value must stay <= ``max`` (lower is better)."""

    pattern: str
    max: float
    machine: str = ""
    profile: str = ""
    note: str = ""

    def matches(self, bench: str, machine: str, profile: str) -> bool:
        return re.search(self.pattern, bench) is not None and _in_scope(self, machine, profile)


@dataclass(frozen=True)
class MinChange:
    """The smallest absolute change worth an alert, in the benchmark's unit.

    A relative threshold alone fails on series whose noise is absolute rather than
    proportional: a 1.5 ms p95 moves by 0.4 ms (+25 %) with the host's scheduling jitter,
    and RSS growth of 0.2 KiB per cycle is a fraction of one 4 KiB page. A regression must
    cross both the relative threshold and this floor."""

    pattern: str
    value: float
    machine: str = ""
    profile: str = ""
    note: str = ""

    def matches(self, bench: str, machine: str, profile: str) -> bool:
        return re.search(self.pattern, bench) is not None and _in_scope(self, machine, profile)


@dataclass(frozen=True)
class Baseline:
    """A blessed value for one benchmark series on one machine and profile."""

    benchmark: str
    machine: str
    profile: str
    value: float
    commit: str
    blessed_at: str = ""
    unit: str = ""


@dataclass(frozen=True)
class Noise:
    """Noise-derived threshold for one series (written by calibration)."""

    benchmark: str
    threshold: float
    machine: str = ""
    profile: str = ""
    unstable: bool = False

    def matches(self, bench: str, machine: str, profile: str) -> bool:
        return self.benchmark == bench and _in_scope(self, machine, profile)


@dataclass(frozen=True)
class Baselines:
    """Everything in ``baselines/``, loaded and validated."""

    directory: Path
    limits: tuple[Limit, ...]
    baselines: tuple[Baseline, ...]
    noise: tuple[Noise, ...]
    min_changes: tuple[MinChange, ...] = ()

    def limit_for(self, bench: str, machine: str, profile: str) -> Limit | None:
        """The most specific matching limit (machine/profile-specific before generic)."""
        return _most_specific(self.limits, bench, machine, profile)

    def min_change_for(self, bench: str, machine: str, profile: str) -> MinChange | None:
        """The most specific matching smallest change (machine/profile-specific first)."""
        return _most_specific(self.min_changes, bench, machine, profile)

    def baseline_for(self, bench: str, machine: str, profile: str) -> Baseline | None:
        for b in self.baselines:
            if b.benchmark == bench and b.machine == machine and b.profile == profile:
                return b
        return None

    def noise_for(self, bench: str, machine: str, profile: str) -> Noise | None:
        return _most_specific(self.noise, bench, machine, profile)


_E = TypeVar("_E", Limit, MinChange, Noise)


def _in_scope(entry: Limit | MinChange | Noise, machine: str, profile: str) -> bool:
    """An entry without ``machine``/``profile`` applies to every machine/profile."""
    return entry.machine in ("", machine) and entry.profile in ("", profile)


def _most_specific(entries: tuple[_E, ...], bench: str, machine: str, profile: str) -> _E | None:
    """The matching entry that names the machine and profile, before generic ones."""
    found = [e for e in entries if e.matches(bench, machine, profile)]
    found.sort(key=lambda e: (e.machine == "", e.profile == ""))
    return found[0] if found else None
