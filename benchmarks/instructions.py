"""Instructions the server executes, counted by valgrind: figures the host cannot move.

CPU time per message of one commit moves by 50 % and more between two runs on a shared
machine; the number of instructions behind it does not. ``benchmarks/load/
instructions.py`` runs the commit's server under valgrind's callgrind with its clocks
stopped and counts, per window of sequential requests, what the server executed (see
docs/BENCHMARKS.md, "Instruction counts"). Two runs of one commit agree to well under
1 %, so ``asv continuous -b Instructions --factor 1.02`` is a gate that a commit which
changed nothing passes and a 3 % regression fails.

The ``version`` of the class holds the valgrind, Python and libfaketime versions: a
count is only comparable with counts of the same simulator, interpreter and clock shim,
and asv starts a new series when the version changes instead of comparing across it.
Without valgrind or libfaketime every figure is NaN (asv: skipped) and the reason is
printed on stderr.
"""

import glob
import math
import platform
import shutil
import subprocess
import sys

from ._harness import figure, run_instrument

PATHS = ["echo", "status", "chat", "analyze", "listmodels", "tools_list"]
OPEN_CONNECTIONS = [1, 100, 1000]
#: Where Debian and a source install put libfaketime (benchmarks/load/instructions_callgrind.py).
LIBFAKETIME = ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1",
               "/usr/local/lib/faketime/libfaketime.so.1")


def _missing():
    """Why instruction counts cannot be measured here, or None."""
    for tool in ("valgrind", "vgdb"):
        if shutil.which(tool) is None:
            return f"{tool} not found (Debian: apt-get install valgrind)"
    if not any(glob.glob(pattern) for pattern in LIBFAKETIME):
        return "libfaketime not found (Debian: apt-get install libfaketime)"
    return None


def _version():
    """Bump the leading number only when what a figure means changes."""
    parts = ["1", f"python{platform.python_version()}"]
    if shutil.which("valgrind"):
        out = subprocess.run(["valgrind", "--version"], capture_output=True, text=True)
        parts.append(out.stdout.strip() or "valgrind-unknown")
    if shutil.which("dpkg-query"):
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "libfaketime"],
                             capture_output=True, text=True)
        if out.returncode == 0:
            parts.append(f"libfaketime{out.stdout.strip()}")
    return "-".join(parts)


def _attrs(**attrs):
    """Set asv's attributes (unit, params, timeout) on a benchmark method."""

    def mark(fn):
        for name, value in attrs.items():
            setattr(fn, name, value)
        return fn

    return mark


class Instructions:
    """Instructions per message, per connection life, per idle second (lower is better)."""

    version = _version()
    timeout = 60

    @_attrs(timeout=1800)
    def setup_cache(self):
        # Once per asv run and environment; every track_ method reads its result.
        why = _missing()
        if why is not None:
            print(f"Instructions skipped: {why}", file=sys.stderr)
            return {"skipped": why}
        return run_instrument("benchmarks.load.instructions", "--quiet", keep_as="instructions")

    @_attrs(params=[PATHS], param_names=["path"], unit="instructions")
    def track_instructions_per_message(self, result, path):
        """One request of ``path`` on an open connection, one at a time."""
        return _figure(result, f"per_message.{path}")

    @_attrs(unit="instructions")
    def track_instructions_per_connection(self, result):
        """Handshake, initialize, notifications/initialized, close."""
        return _figure(result, "per_connection")

    @_attrs(params=[OPEN_CONNECTIONS], param_names=["open_connections"], unit="instructions")
    def track_instructions_per_message_with_open_connections(self, result, open_connections):
        """One echo with ``open_connections`` other (idle, initialized) connections open."""
        return _figure(result, f"per_message_open.{open_connections}")

    @_attrs(unit="instructions/s")
    def track_instructions_idle_per_second(self, result):
        """A second of an idle server: its metrics tick and other clock-driven work."""
        return _figure(result, "idle_per_second")


def _figure(result, name):
    if "skipped" in result:
        return math.nan
    return figure(result, name)
