"""Child processes that run code of the commit under test (``asv``, ``versus --commits``):
the environment they get and the process groups they run in.

Why an allow-list: a commit's build and benchmarks are code we have not reviewed, and the
run log's tail goes to Slack with a failure alert. Inheriting the scheduler's environment
would hand them ``SLACK_BOT_TOKEN``, ``SLACK_WEBHOOK_URL``, provider API keys and whatever
else the operator exported. They get what building and measuring needs, nothing else;
``[asv] pass_env`` adds names or patterns for a project that needs more.

Why process groups: both run in their own session (``start_new_session``) so that a stop
reaches their children (uv, pip, the benchmark processes, the two servers). A daemon
killed with SIGKILL cannot stop them, so their group ids are stored in the state database
and the next start stops whatever is left (:func:`kill_orphan_group`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

#: Exact names passed to children (when set).
ALLOWED_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LANGUAGE", "TZ",
    "TMPDIR", "TEMP", "TMP",
    # where uv, pip and matplotlib keep caches and configuration
    "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR",
    # builds behind a proxy or with a private CA
    "http_proxy", "https_proxy", "no_proxy", "all_proxy",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    # C extensions of a commit's dependencies
    "CC", "CXX", "CFLAGS", "CXXFLAGS", "CPPFLAGS", "LDFLAGS", "PKG_CONFIG_PATH",
    "LD_LIBRARY_PATH",
})

#: Name prefixes passed to children. ``PYTHON*`` except ``PYTHONPATH`` (below): it would
#: put this checkout's modules in front of the commit's own in asv's environments.
ALLOWED_PREFIXES = ("LC_", "BENCH_", "ASV_", "PIP_", "UV_", "PYTHON")

#: Never passed, whatever the prefixes or ``pass_env`` say.
DENIED_NAMES = frozenset({"PYTHONPATH", "SLACK_BOT_TOKEN", "SLACK_WEBHOOK_URL",
                          "SLACK_CHANNEL"})


def child_env(pass_env: Iterable[str] = (), *, base: Mapping[str, str] | None = None,
              overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child that runs commit code: the allow-listed variables of
    ``base`` (default ``os.environ``), the names or shell-style patterns of ``pass_env``,
    then ``overrides``. The tools installed next to this interpreter (uv, virtualenv)
    are put on PATH, as asv finds them there."""
    base = os.environ if base is None else base
    patterns = tuple(pass_env)
    env = {k: v for k, v in base.items()
           if k not in DENIED_NAMES and (k in ALLOWED_NAMES or k.startswith(ALLOWED_PREFIXES)
                                         or any(fnmatch.fnmatchcase(k, p) for p in patterns))}
    bindir = str(Path(sys.executable).parent)
    if bindir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = bindir + os.pathsep + env.get("PATH", os.defpath)
    env.update(overrides or {})
    return env


def kill_group(proc: subprocess.Popen[str], grace_s: float = 10.0) -> None:
    """SIGTERM to the process group of ``proc`` (its session leader), SIGKILL after
    ``grace_s``."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def group_members(pgid: int) -> list[int]:
    """Live PIDs whose process group is ``pgid`` (from /proc; the leader may be gone while
    its children are not; zombies are left out)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def groups_of(needle: bytes) -> set[int]:
    """Process groups of the live processes whose command line or environment contains
    ``needle`` (what only our children have: the state directory's asv.conf.json, a work
    directory, ``SCHEDULER_STATE_DIR=...``)."""
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and needle in _described(int(entry.name)):
            with contextlib.suppress(OSError):
                out.add(os.getpgid(int(entry.name)))
    return out


def _described(pid: int) -> bytes:
    """Command line and environment of a process (what of them can be read)."""
    out = b""
    for name in ("cmdline", "environ"):
        with contextlib.suppress(OSError):
            out += Path(f"/proc/{pid}/{name}").read_bytes().replace(b"\0", b" ") + b"\n"
    return out


def kill_orphan_group(pgid: int, markers: tuple[bytes, ...], *,
                      grace_s: float = 10.0) -> bool:
    """Stop a process group a killed scheduler left behind. Only when the command line or
    environment of one of its members contains one of ``markers`` (PIDs and group ids get
    reused; the group's leader may be gone, e.g. asv died of the broken pipe to the killed
    daemon while its benchmark runs on). SIGTERM, then SIGKILL after ``grace_s`` (0:
    SIGKILL at once). True when there was one to stop."""
    if pgid <= 1 or pgid == os.getpgrp():
        return False  # never our own group (a child that did not get its own session)
    members = group_members(pgid)
    if not any(m in _described(pid) for pid in members for m in markers):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM if grace_s > 0 else signal.SIGKILL)
    deadline = time.monotonic() + grace_s
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)  # reaped by init; /proc entries go away shortly after
    return True
