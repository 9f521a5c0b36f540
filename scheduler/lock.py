"""One daemon per state directory: an fcntl lock file.

Why fcntl rather than a PID file: the kernel releases the lock when the process dies, even
on SIGKILL, so a crashed daemon never leaves a stale lock that a human has to delete.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType


class LockBusyError(Exception):
    """Another process holds the lock on this state directory."""


class StateLock:
    """Exclusive, non-blocking lock on ``<state_dir>/scheduler.lock``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "scheduler.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            finally:
                os.close(fd)
            raise LockBusyError(
                f"another scheduler (pid {holder}) is using state directory {self.path.parent}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
