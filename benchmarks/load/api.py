"""Programmatic entry point: :func:`run_scenario` returns the result document (a dict).

The CLI is a thin wrapper around it; tests and scripts call it directly. Either aim it at
a running server (``url``, optionally ``server_pid`` for resource sampling) or let it
start one (``server_python``: ``PYTHON -m toolserver serve --port 0 ...``), which it pins
to core 0 (the generator to the other cores), samples, and stops at the end.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from . import environment, profiles
from . import reference as ref
from .estimate import clock, expected_s
from .phase import ProgressOut, to_stderr
from .resources import ResourceSampler, compact
from .result import ScenarioResult, document
from .runner import Runner, Target
from .scenarios.registry import SCENARIOS
from .server_process import ServerProcess, fetch_health, pin_generator

#: Arguments every server the instrument starts gets: loopback, free port, room for the
#: 1000-connection steps (the server's default cap is exactly 1000), request log in a
#: temporary directory (not in the checkout).
BASE_SERVER_ARGS = ("serve", "--host", "127.0.0.1", "--port", "0",
                    "--max-connections", "4096")


def start_server(python: str, extra_args: Sequence[str] = (), *,
                 pythonpath: Sequence[str] = (), core: int | None = 0,
                 request_log_dir: str | None = None) -> ServerProcess:
    """Start ``python -m toolserver serve`` for a run (the caller discards it)."""
    args = list(BASE_SERVER_ARGS)
    folder = None
    if "--request-log" not in extra_args:
        folder = request_log_dir or tempfile.mkdtemp(prefix="loadgen-")
        args += ["--request-log", f"sqlite:///{os.path.join(folder, 'requests.sqlite3')}"]
    args += list(extra_args)
    server = ServerProcess(python, args, pythonpath=list(pythonpath), core=core)
    if folder is not None and request_log_dir is None:
        server.owned.append(folder)
    try:
        server.start()
    except BaseException:
        server.discard()
        raise
    return server


def run_scenario(scenario: str, profile: str = "smoke", *, url: str | None = None,
                 token: str | None = None, server_pid: int | None = None,
                 server_python: str | None = None, server_args: Sequence[str] = (),
                 server_pythonpath: Sequence[str] = (), admin: bool | None = None,
                 workers: int = 1, overrides: dict[str, str] | None = None,
                 enforce_full: bool = False, progress_s: float = 0.0,
                 progress_out: ProgressOut | None = None,
                 pin: bool = True,
                 calibration: ref.Calibration | None = None) -> dict[str, Any]:
    """Run one scenario at one profile and return its ``benchmarks.load/1`` document.

    With ``progress_s`` > 0, progress lines (the phase running, elapsed and expected
    time) go to ``progress_out`` (default stderr). When the profile asks for round
    pairs (``pairs``), a reference server is started too (:mod:`reference`: the
    calibrated toolserver tree on this interpreter, pinned like the target) and the
    phases alternate between the two; ``calibration`` is the table of nominal values
    (default: the committed ``reference.toml``).
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {sorted(SCENARIOS)}")
    if (url is None) == (server_python is None):
        raise ValueError("give exactly one of url (a running server) or server_python")
    run_fn, scenario_args = SCENARIOS[scenario]
    params = profiles.params(scenario, profile, overrides)
    nofile = environment.raise_nofile()
    started_at = time.time()
    t0 = time.perf_counter()
    old_affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    server: ServerProcess | None = None
    sampler: ResourceSampler | None = None
    # the request log of the server started here: removed afterwards (a one-hour soak
    # writes millions of rows; left in /tmp, every run would add its own)
    scratch = tempfile.mkdtemp(prefix="loadgen-") if server_python is not None else None
    reference: ref.Reference | None = None
    pairs = getattr(params, "pairs", 0)
    if pairs and workers > 1:
        raise ValueError(f"{scenario}: the reference rounds run in one generator process; "
                         "use --workers 1, or --set pairs=0 for no host-corrected figures")
    # the reference starts while the target does (a server takes a second to import)
    starter = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="reference")
    starting = starter.submit(
        start_reference, scenario, scenario_args, token=token, core=0 if pin else None,
        calibration=calibration) if pairs else None
    try:
        if server_python is not None:
            given = {a.split("=", 1)[0] for a in server_args}
            extra = [x for group in scenario_args if group[0] not in given for x in group]
            extra += list(server_args)
            if token and "--token" not in extra:  # the server we start must expect it
                extra += ["--token", token]
            server = start_server(server_python, extra, pythonpath=server_pythonpath,
                                  core=0 if pin else None, request_log_dir=scratch)
            url = server.url
            server_pid = server.pid
            if admin is None:
                admin = "--allow-admin" in extra
        assert url is not None
        check_loopback(url)
        if starting is not None:
            reference = starting.result()
        gen_cores = pin_generator(0) if pin and server is not None else None
        health = fetch_health(url)
        sampler = ResourceSampler(server_pid).start() if server_pid else None
        target = Target(url=url, token=token, server=server, pid=server_pid,
                        admin=bool(admin))
        runner = Runner(target=target, sampler=sampler, workers=workers,
                        progress_s=progress_s, t0=t0, label=f"{scenario}/{profile}",
                        expected_s=expected_s(scenario, params),
                        out=progress_out or to_stderr, reference=reference)
        runner.say("started")
        res = ScenarioResult(scenario=scenario, profile=profile)
        run_fn(runner, params, res)
        res.notes.extend(runner.notes)
        if sampler is not None:
            sampler.mark()
        elapsed = time.perf_counter() - t0
        runner.say(f"done in {clock(elapsed)}")
        settings = {
            "scenario": scenario, "profile": profile, "url": url,
            "token_set": token is not None, "workers": workers,
            "server_python": server_python,
            "server_command": server.command() if server else None,
            "server_pid": server_pid, "generator_cores": gen_cores,
            "rlimit_nofile": list(nofile), "params": _jsonable(params),
            "overrides": overrides or {}, "enforce_full": enforce_full,
        }
        server_info = {"url": url, "pid": server_pid, "managed": server is not None,
                       "starts": server.starts if server else None, "health": health,
                       "cpu_clock": "process-clock" if sampler and sampler.precise_cpu
                       else "ticks"}
        return document(
            res, started_at=started_at, elapsed_s=elapsed, settings=settings,
            machine=environment.machine(),
            versions=environment.versions(health.get("version") if health else None),
            server=server_info,
            samples=compact(sampler.samples, t0) if sampler else [],
            enforce_full=enforce_full,
            reference=reference.describe() if reference is not None else None)
    finally:
        if sampler is not None:
            sampler.stop()
        if starting is not None and reference is None:  # the target failed first
            with contextlib.suppress(Exception):
                reference = starting.result()
        starter.shutdown()
        if reference is not None:
            reference.server.discard()
        if server is not None:
            server.discard()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        if old_affinity is not None and pin:
            os.sched_setaffinity(0, old_affinity)


def start_reference(scenario: str, scenario_args: Sequence[Sequence[str]], *,
                    token: str | None, core: int | None,
                    calibration: ref.Calibration | None = None) -> ref.Reference:
    """Start the reference server of a run: the scenario's own server options (never the
    user's ``--server-arg``: those describe the target), this interpreter, core ``core``."""
    cal = calibration if calibration is not None else ref.load_calibration()
    src, source = ref.source_dir(cal)
    if source.get("warning"):
        print(f"warning: {source['warning']}", file=sys.stderr, flush=True)
    args = [x for group in scenario_args for x in group]
    if token:
        args += ["--token", token]
    server = start_server(sys.executable, args, pythonpath=[str(src)], core=core)
    return ref.Reference(server, cal, scenario, source)


LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def check_loopback(url: str) -> None:
    """The instrument only ever loads 127.0.0.1: it is a benchmark, not a load-testing
    tool for other people's machines."""
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    if host not in LOOPBACK:
        raise ValueError(f"only loopback targets are allowed, got {url!r}")


def _jsonable(params: Any) -> dict[str, Any]:
    from dataclasses import asdict
    out = asdict(params)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}
