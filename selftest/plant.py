"""Planted changes of known effect, for proving the detection.

A *plant* edits a checkout of the toolserver the way a careless commit would:
extra work on the message path (+CPU per message), a sleep before the
provider call (+latency of ``chat``), memory kept per connection (a leak), a
extra work in the handshake (slower connection establishment). Neutral plants
change documentation or code without changing speed. The detection
self-test (``python -m scheduler evaluate``) and the tests commit these into
throwaway repositories and check which ones the service names.

Plants insert statements at the top of a function found by name, so they keep
working while the server's code evolves; a missing anchor is a clear error.
"""

from __future__ import annotations

import functools
import math
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SERVER = Path("src/toolserver/server.py")
TOOLS = Path("src/toolserver/tools.py")


#: What a throwaway repository needs to build and benchmark the server.
PROJECT_FILES = ("pyproject.toml", "asv.conf.json", "README.md", "src", "benchmarks")


def copy_project(source: Path, dest: Path) -> None:
    """Copy the project files of checkout ``source`` into ``dest`` (no caches, no venv)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = source / name
        if src.is_dir():
            shutil.copytree(
                src, dest / name,
                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"),
            )
        elif src.exists():
            shutil.copy2(src, dest / name)


class AnchorNotFound(RuntimeError):
    """The function a plant edits no longer exists in the checkout."""


@dataclass(frozen=True)
class Plant:
    """One change to commit, and what it should do to the figures."""

    name: str
    description: str
    apply: Callable[[Path], None]
    #: Regexes of asv benchmark names that must be flagged; empty: neutral.
    expect: tuple[str, ...] = field(default=())

    @property
    def neutral(self) -> bool:
        return not self.expect


def insert_at_top(path: Path, function: str, lines: list[str]) -> None:
    """Insert ``lines`` as the first statements of ``def function(...)`` in ``path``."""
    source = path.read_text().splitlines(keepends=True)
    pattern = re.compile(rf"^(\s*)(async\s+)?def\s+{re.escape(function)}\s*\(")
    for i, line in enumerate(source):
        match = pattern.match(line)
        if not match:
            continue
        # The signature may span lines: it ends at the first line ending in ':'.
        end = i
        while not source[end].split("#", 1)[0].rstrip().endswith(":"):
            end += 1
        indent = match.group(1) + "    "
        block = [f"{indent}{text}\n" for text in lines]
        path.write_text("".join(source[: end + 1] + block + source[end + 1 :]))
        return
    raise AnchorNotFound(f"no function {function!r} in {path}")


def _work_lines(iterations: int) -> list[str]:
    return [f"for _planted in range({iterations}):", "    pass"]


def _loop_cost_ns(iterations: int) -> float:
    """CPU ns of one call of a function holding the planted loop: the fastest of 7
    batches. The fastest, not the median: the host can only inflate a timing (another
    tenant, an interrupt), and a calibration taken in a busy moment would make the plant
    smaller than its name."""
    namespace: dict[str, object] = {}
    body = "".join(f"    {line}\n" for line in _work_lines(iterations))
    exec(compile(f"def _planted_work():\n{body}", "<plant>", "exec"), namespace)
    work = namespace["_planted_work"]
    assert callable(work)
    calls = max(1, 100_000 // iterations)
    best = math.inf
    for _ in range(7):
        start = time.thread_time_ns()
        for _ in range(calls):
            work()
        best = min(best, (time.thread_time_ns() - start) / calls)
    return best


@functools.cache
def iterations_for(microseconds: float) -> int:
    """Iterations of the planted loop that cost ``microseconds`` of CPU per call here.

    Found by timing the loop at its own size, three times refined: the cost per
    iteration is not a constant (below 257 the loop's integers come from CPython's
    small-int cache, above they are allocated: 11 against 20 ns here)."""
    target = microseconds * 1000
    iterations = max(1, round(target / 15))
    for _ in range(3):
        iterations = max(1, round(iterations * target / _loop_cost_ns(iterations)))
    return iterations


def _work(microseconds: float) -> list[str]:
    """Extra work costing about ``microseconds`` of CPU per call.

    A fixed amount of work, not a wait on a clock: a real regression adds instructions,
    and their CPU cost varies with the host exactly as the rest of the message's does,
    so the planted share stays the same however busy the host is. A busy-wait on the
    wall clock costs less CPU whenever the hypervisor takes the vCPU away mid-spin
    (measured: a "+10 %" wall-clock spin showed as +5 % in one evaluation), and one on
    the thread CPU clock overshoots by a system call (about 1 µs here) per check.
    """
    return _work_lines(iterations_for(microseconds))


def cpu_per_message(microseconds: float) -> Plant:
    """Every ``tools/call`` burns extra CPU on the event loop."""
    return Plant(
        name=f"cpu+{microseconds:g}us",
        description=f"extra work of {microseconds:g} µs CPU in every tools/call",
        apply=lambda root: insert_at_top(root / SERVER, "_tools_call", _work(microseconds)),
        expect=(r"server_cpu_per_message\(.*", r"LoadPerformance\.track_time_per_message"),
    )


def chat_latency(milliseconds: float) -> Plant:
    """``chat`` waits before calling its provider (p95 of chat grows)."""
    return Plant(
        name=f"chat+{milliseconds:g}ms",
        description=f"sleep of {milliseconds:g} ms before every chat provider call",
        apply=lambda root: insert_at_top(
            root / TOOLS, "_chat", [f"await __import__('asyncio').sleep({milliseconds / 1000!r})"]
        ),
        expect=(r"EndToEndLatency\.track_latency_p(50|95|99)\(chat",),
    )


def connection_leak(kib: int) -> Plant:
    """Each connection leaves ``kib`` KiB behind that is never freed."""
    return Plant(
        name=f"leak{kib}KiB",
        description=f"{kib} KiB kept for ever per accepted connection",
        apply=lambda root: insert_at_top(
            root / SERVER,
            "handler",
            # Written bytes, not zeros: calloc'd zero pages would not count in RSS.
            [f"globals().setdefault('_PLANTED_LEAK', []).append(b'x' * {kib * 1024})"],
        ),
        expect=(r"memory_per_connection", r"churn_rss_per_cycle"),
    )


def slow_connect(microseconds: float) -> Plant:
    """The handshake burns CPU before answering (connection establishment slows)."""
    return Plant(
        name=f"connect+{microseconds:g}us",
        description=f"extra work of {microseconds:g} µs CPU in every handshake",
        apply=lambda root: insert_at_top(root / SERVER, "process_request", _work(microseconds)),
        expect=(r"server_cpu_per_session", r"establish_100_connections", r"connect_p99",
                r"churn_server_cpu"),
    )


_COUNT_SCRIPT = """
def _planted_work():
{body}
for _ in range({calls}):
    _planted_work()
"""


def _instructions_of(script: str) -> int:
    """Instructions executed by this interpreter running ``script``, counted by valgrind
    (callgrind's total): the same count on any day, whatever else the host is doing."""
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="plant-") as tmp:
        out = os.path.join(tmp, "callgrind.out")
        try:
            proc = subprocess.run(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                 sys.executable, "-c", script],
                capture_output=True, text=True, check=False,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHASHSEED": "0"})
        except FileNotFoundError:
            raise RuntimeError("valgrind is not installed: an instruction-sized plant "
                               "cannot be calibrated (bash scripts/bootstrap.sh installs "
                               "it as root)") from None
        match = re.search(r"Collected\s*:\s*(\d+)", proc.stderr)
        if proc.returncode != 0 or match is None:
            raise RuntimeError(f"valgrind failed (exit {proc.returncode}): "
                               f"{proc.stderr[-500:]}")
        return int(match.group(1))


@functools.cache
def instructions_per_call(iterations: int) -> float:
    """Instructions one call of the planted loop adds (the loop alone, the call's own
    overhead removed): counted under valgrind, 2,000 calls against an empty loop."""
    calls = 2000

    def script(n: int) -> str:
        body = "".join(f"    {line}\n" for line in _work_lines(n))
        return _COUNT_SCRIPT.format(body=body, calls=calls)

    return (_instructions_of(script(iterations)) - _instructions_of(script(0))) / calls


@functools.cache
def iterations_for_instructions(instructions: float) -> int:
    """Iterations of the planted loop that add ``instructions`` per call (about 100 per
    iteration below 257, where CPython's small-int cache serves the loop's integers,
    about 200 above; refined from a count at the size itself)."""
    # Secant steps: the cost is piecewise linear in the iterations (two slopes), so a
    # ratio step overshoots across the small-int boundary.
    prev, n = 0, max(1, round(instructions / 100))
    prev_cost = 0.0
    for _ in range(6):
        cost = instructions_per_call(n)
        if abs(cost - instructions) <= 0.01 * instructions or n == prev:
            break
        slope = (cost - prev_cost) / (n - prev)
        prev, prev_cost = n, cost
        n = max(1, n + round((instructions - cost) / max(slope, 1.0)))
    return n


def _instruction_work(instructions: float) -> list[str]:
    return _work_lines(iterations_for_instructions(instructions))


def _instruction_plant(name: str, description: str, path: Path, function: str,
                       instructions: float, expect: str) -> Plant:
    """``function`` in ``path`` executes ``instructions`` more (loop sized under valgrind)."""
    return Plant(name=f"{name}+{instructions:.0f}",
                 description=f"{instructions:.0f} more instructions in {description}",
                 apply=lambda root: insert_at_top(root / path, function,
                                                  _instruction_work(instructions)),
                 expect=(expect,))


def instructions_per_message(instructions: float) -> Plant:
    """Every ``tools/call`` executes ``instructions`` more (a fixed amount of work)."""
    return _instruction_plant("instr", "every tools/call", SERVER, "_tools_call", instructions,
                              r"^instructions\.Instructions\.track_instructions_per_message")


def chat_instructions(instructions: float) -> Plant:
    """``chat``'s own path (a provider-backed tool) executes ``instructions`` more."""
    return _instruction_plant(
        "chat-instr", "every chat call", TOOLS, "_chat", instructions,
        r"^instructions\.Instructions\.track_instructions_per_message\(path='chat'\)")


def connection_scan(instructions_at_1000: float) -> Plant:
    """Every ``tools/call`` does work proportional to the number of open connections
    (``instructions_at_1000`` more with 1000 open, a tenth of that with 100): a cost that
    a measurement with few connections does not see."""
    per_1000 = iterations_for_instructions(instructions_at_1000)
    lines = [f"for _planted in range(len(self.sessions) * {per_1000} // 1000):", "    pass"]
    return Plant(
        name=f"scan+{instructions_at_1000:.0f}@1000",
        description=f"work growing with open connections: {instructions_at_1000:.0f} "
                    "more instructions per tools/call with 1000 open",
        apply=lambda root: insert_at_top(root / SERVER, "_tools_call", lines),
        expect=(r"^instructions\.Instructions\."
                r"track_instructions_per_message_with_open_connections\(open_connections=1000\)",),
    )


def loop_pause(every: int, milliseconds: float) -> Plant:
    """Every ``every``-th ``tools/call`` blocks the event loop for ``milliseconds`` (a
    synchronous wait: wall time and tail latency, next to no instructions or CPU)."""
    lines = ["_planted = globals().setdefault('_PLANTED_CALLS', [0])",
             "_planted[0] += 1",
             f"if _planted[0] % {every} == 0:",
             f"    __import__('time').sleep({milliseconds / 1000!r})"]
    return Plant(
        name=f"pause{milliseconds:g}ms/{every}",
        description=f"the event loop blocked {milliseconds:g} ms on every {every}th tools/call",
        apply=lambda root: insert_at_top(root / SERVER, "_tools_call", lines),
        expect=(r"track_corrected_latency_p(95|99)\(",),
    )


def slow_connect_instructions(instructions: float) -> Plant:
    """The handshake executes ``instructions`` more (connection establishment)."""
    return _instruction_plant(
        "connect-instr", "every handshake", SERVER, "process_request", instructions,
        r"^instructions\.Instructions\.track_instructions_per_connection")


def docs_change(n: int) -> Plant:
    """Documentation only."""

    def apply(root: Path) -> None:
        readme = root / "README.md"
        text = readme.read_text() if readme.exists() else ""
        readme.write_text(text + f"\n<!-- documentation revision {n} -->\n")

    return Plant(name=f"docs{n}", description="README change only", apply=apply)


def comment_change(n: int) -> Plant:
    """A comment on the hot path: same bytecode."""
    return Plant(
        name=f"comment{n}",
        description="comment added in tools/call",
        apply=lambda root: insert_at_top(
            root / SERVER, "_tools_call", [f"# revision {n}: the request is validated below"]
        ),
    )


def unused_code(n: int) -> Plant:
    """A new function nobody calls."""

    def apply(root: Path) -> None:
        path = root / TOOLS
        path.write_text(
            path.read_text()
            + f"\n\ndef _unused_helper_{n}(value: int) -> int:\n    return value * {n}\n"
        )

    return Plant(name=f"unused{n}", description="unused helper function added", apply=apply)


NEUTRAL_KINDS: tuple[Callable[[int], Plant], ...] = (docs_change, comment_change, unused_code)


def neutral(count: int) -> list[Plant]:
    """``count`` neutral plants, cycling through the kinds."""
    return [NEUTRAL_KINDS[i % len(NEUTRAL_KINDS)](i + 1) for i in range(count)]
