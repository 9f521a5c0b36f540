"""Where a run happened: machine, software versions, file-descriptor limit.

Results are only comparable on the same machine and instrument version, so every result
JSON carries these; asv compares commits, and a changed instrument must be visible.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import sys
from importlib import metadata
from typing import Any

import psutil

#: Bumped whenever a change to the instrument could move its figures.
INSTRUMENT_VERSION = "1.0"


def raise_nofile(wanted: int = 65536) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE's soft limit towards the hard limit (1000s of sockets).

    Called before the server is started, so a managed server inherits the raised limit too.
    Returns the (soft, hard) limit in force afterwards.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return (0, 0)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


#: file descriptors a run needs besides its sockets (interpreter, sampler, logs, pipes)
FD_RESERVE = 64


def nofile_shortfall(connections: int) -> str | None:
    """Why ``connections`` sockets will not all open under this process's RLIMIT_NOFILE,
    or None when they fit. Without this, the connections over the limit fail one by one
    as ``connect:oserror_24`` (EMFILE) and the resource sampler loses the server too."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = connections + FD_RESERVE
    if soft == resource.RLIM_INFINITY or need <= soft:
        return None
    return (f"RLIMIT_NOFILE is {soft} (hard limit {hard}): {connections} connections need "
            f"about {need} file descriptors; raise it before the run (ulimit -n "
            f"{max(4096, need)}; the hard limit is set in /etc/security/limits.conf or "
            "with systemd's LimitNOFILE=)")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """Host, OS, CPU model and count, memory."""
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else None,
        "mem_total_mib": psutil.virtual_memory().total // (1024 * 1024),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions(server_version: str | None = None) -> dict[str, Any]:
    """Instrument interpreter and library versions, and the server's own (from /health)."""
    return {
        "instrument": INSTRUMENT_VERSION,
        "python": sys.version.split()[0],
        "websockets": _version("websockets"),
        "uvloop": _version("uvloop"),
        "hdrhistogram": _version("hdrhistogram"),
        "psutil": _version("psutil"),
        "server": server_version,
    }
