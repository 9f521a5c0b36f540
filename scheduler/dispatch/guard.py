"""Run a command and take its whole process group along when our parent dies.

    python scheduler/dispatch/guard.py -- python -m asv run ...

Why: a runner measures with ``asv run`` in its own session (so it can be stopped as a
group), and a session outlives the process that started it. When a runner is killed
(kill -9, the OOM killer, a host agent), an orphaned ``asv run`` would go on measuring:
its load disturbs the next measurement on that host, and a job delivered again would be
measured twice at once. The runner starts asv through this guard, which is the group's
leader: it asks the kernel for a signal when its parent dies (``PR_SET_PDEATHSIG``, with
a poll of the parent as a fallback) and then stops the group (SIGTERM, SIGKILL after a
grace period). A SIGTERM to the group (abandon, timeout) reaches asv directly.

Standard library only: asv starts it by path, from any working directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
GRACE_S = 10.0


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(os.getpgrp(), signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(os.getpgrp(), signal.SIGKILL)  # ourselves included


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: guard.py -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    proc = subprocess.Popen(argv)

    def on_term(_signum: int, _frame: object) -> None:
        _stop_group(proc)
        sys.exit(143)

    signal.signal(signal.SIGTERM, on_term)
    if os.getppid() != parent:  # the parent died before the death signal was armed
        _stop_group(proc)
        return 143
    while True:
        try:
            rc = proc.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            if os.getppid() != parent:
                _stop_group(proc)
                return 143
    if rc < 0:  # end the way the command ended, so the caller sees the signal
        if -rc not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(-rc, signal.SIG_DFL)
        os.kill(os.getpid(), -rc)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
