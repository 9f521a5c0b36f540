"""The server under valgrind's callgrind, its instruction counter read over vgdb.

valgrind counts the instructions the server executes by simulating the CPU, so the count
does not depend on how busy the host is; callgrind (not cachegrind) because it can be
dumped while the program runs: ``vgdb --pid=PID dump`` writes the count since the
previous dump to ``<out>.<part>`` and restarts it, so a measurement window is the
interval between two dumps and the server's start-up and shutdown never count.

Start-up runs with instrumentation off (``--instr-atstart=no``): valgrind then only
translates the code, several times faster than counting it (5 s instead of 30 s to
start); :meth:`CallgrindServer.instrumentation` switches it on for the measurement (and
off again to open a thousand connections quickly).

Each vgdb command stops the server for about 0.1 s (vgdb attaches with ptrace, the
command takes effect within a few milliseconds, then vgdb waits for valgrind's
gdbserver to finish); a dump can land in the middle of any work, so a window is only
cut when the driver has nothing outstanding.

``clock_rate``: the server's clocks run at that fraction of real time (libfaketime,
preloaded). Work the server does on a clock (the metrics tick once a second, a
keepalive ping every 20 s per connection) then never comes due during a measurement,
so a window holds only the work its requests caused, however long a loaded host takes
to run it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .server_process import _LIBC, ServerProcess

#: Options that do not change what is counted, only what is written per dump.
CALLGRIND_OPTIONS = ("--tool=callgrind", "--instr-atstart=no", "--dump-instr=no",
                     "--dump-line=no", "--collect-jumps=no")

#: Where Debian (package ``libfaketime``) and a source install put the library.
LIBFAKETIME_PATHS = ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1",
                     "/usr/local/lib/faketime/libfaketime.so.1")

_SUMMARY = re.compile(rb"^summary:\s*(\d+)\s*$", re.MULTILINE)


class MissingTool(RuntimeError):
    """valgrind, vgdb or libfaketime is not installed: no instruction counts."""


def valgrind_version() -> str:
    """``3.19.0`` for valgrind-3.19.0; :class:`MissingTool` when it is not installed."""
    for tool in ("valgrind", "vgdb"):
        if shutil.which(tool) is None:
            raise MissingTool(
                f"{tool} not found on PATH: instruction counts need valgrind "
                "(Debian: apt-get install valgrind; scripts/bootstrap.sh installs it as root)")
    out = subprocess.run(["valgrind", "--version"], capture_output=True, text=True,
                         check=True).stdout.strip()
    return out.removeprefix("valgrind-")


def libfaketime() -> tuple[str, str]:
    """(path, version) of libfaketime; ``BENCH_LIBFAKETIME`` names another file."""
    explicit = os.environ.get("BENCH_LIBFAKETIME")
    found = [explicit] if explicit else sorted(
        p for pattern in LIBFAKETIME_PATHS for p in glob.glob(pattern))
    if not found or not os.path.exists(found[0]):
        raise MissingTool(
            "libfaketime not found (looked for "
            f"{explicit or ', '.join(LIBFAKETIME_PATHS)}): instruction counts need it to "
            "stop the server's clock (Debian: apt-get install libfaketime; "
            "scripts/bootstrap.sh installs it as root)")
    path = found[0]
    version = "unknown"
    if shutil.which("dpkg-query"):
        proc = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "libfaketime"],
                              capture_output=True, text=True)
        if proc.returncode == 0 and proc.stdout.strip():
            version = proc.stdout.strip()
    if version == "unknown":
        version = f"{os.path.getsize(path)}b"  # a different build, at least visibly
    return path, version


class VgdbError(RuntimeError):
    """A vgdb command failed (the server died, or valgrind stopped answering)."""


def _killed_with_parent() -> None:
    """In the child before exec: SIGKILL it when the instrument dies. A server whose
    clock is stopped would wait for ever for a dead client to finish closing."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class CallgrindServer(ServerProcess):
    """A :class:`ServerProcess` whose command runs under callgrind.

    ``workdir`` holds the dump files and vgdb's FIFOs (``--vgdb-prefix``), so two
    measurements on one machine never talk to each other's valgrind. Not pinned to a
    core by default: the count does not depend on where it runs, and on a shared host
    core 0 is where every other benchmark pins its server.
    """

    def __init__(self, python: str, args: list[str], *, workdir: Path,
                 env: dict[str, str] | None = None, clock_rate: float | None = None,
                 setarch: bool = True, startup_timeout_s: float = 180.0,
                 core: int | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        env = dict(env or {})
        self.libfaketime: tuple[str, str] | None = None
        if clock_rate is not None:
            self.libfaketime = libfaketime()
            env.update(LD_PRELOAD=self.libfaketime[0], FAKETIME=f"+0 x{clock_rate:g}",
                       # The setting is read once: re-reading it every 10 s (the default)
                       # would be clock-driven work of its own.
                       FAKETIME_CACHE_DURATION="1000000000")
        super().__init__(python, args, env=env, core=core, cwd=str(workdir),
                         startup_timeout_s=startup_timeout_s,
                         log_path=str(workdir / "server.log"))
        self.workdir = workdir
        self.out = workdir / "callgrind.out"
        self.vgdb_prefix = str(workdir / "vgdb")
        # Address-space randomisation moves CPython's object addresses, and with them
        # the hash of every object hashed by identity (set and dict layouts).
        self.setarch = setarch and shutil.which("setarch") is not None
        self.parts = 0
        self.commands = 0
        self.command_s = 0.0
        #: Keep every dump file (``<workdir>/callgrind.out.<part>``) for callgrind_annotate.
        self.keep_dumps = False
        self.instrumented = False
        self.ready_at = 0.0

    death_signal_setter = staticmethod(_killed_with_parent)

    def command(self) -> list[str]:
        valgrind = ["valgrind", *CALLGRIND_OPTIONS, f"--vgdb-prefix={self.vgdb_prefix}",
                    f"--callgrind-out-file={self.out}"]
        prefix = ["setarch", "-R"] if self.setarch else []
        return [*prefix, *valgrind, *super().command()]

    def start(self) -> str:
        url = super().start()
        #: When it announced its URL (its metrics ticker started a moment before).
        self.ready_at = time.monotonic()
        return url

    def vgdb(self, *command: str, timeout_s: float = 60.0) -> str:
        """Send one monitor command to the server's valgrind; returns its output."""
        if not self.alive():
            code = self.proc.returncode if self.proc else None
            raise VgdbError(f"server exited (code {code}) before vgdb {' '.join(command)}; "
                            f"log: {self.tail_log()}")
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                ["vgdb", f"--vgdb-prefix={self.vgdb_prefix}", f"--pid={self.pid}",
                 "--max-invoke-ms=1", *command],
                capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise VgdbError(f"vgdb {' '.join(command)} did not answer in {timeout_s} s") from exc
        finally:
            self.commands += 1
            self.command_s += time.perf_counter() - t0
        if proc.returncode != 0:
            raise VgdbError(f"vgdb {' '.join(command)} failed (exit {proc.returncode}): "
                            f"{proc.stderr.strip()[-500:]}")
        return proc.stdout

    def instrumentation(self, on: bool) -> None:
        """Count from now on (``on``) or only translate (faster, counts nothing)."""
        self.vgdb("instrumentation", "on" if on else "off")
        self.instrumented = on

    def dump(self) -> int:
        """Instructions executed since the previous dump; the counter restarts at zero."""
        self.vgdb("dump")
        self.parts += 1
        path = Path(f"{self.out}.{self.parts}")
        data = path.read_bytes()
        match = _SUMMARY.search(data)
        if match is None:
            raise VgdbError(f"no summary line in {path}")
        if not self.keep_dumps:
            path.unlink()
        return int(match.group(1))

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """Stop the server; counting its shutdown would only slow it down."""
        if self.instrumented and self.alive():
            with contextlib.suppress(VgdbError):  # it is being stopped anyway
                self.instrumentation(False)
        return super().stop(timeout_s)
