"""What scenarios use to run phases: the target, the sampler, timed actions, admin calls.

A scenario is plain sequential code ("run this phase, then that one, then check"); the
:class:`Runner` fills in the URL, token, worker count and progress setting of every
phase, attaches the server's resource samples, and runs *actions* (a server restart, an
``admin/provider`` call) on a thread at given offsets while a phase's load is running, so
that the load loops themselves never block on them.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.sync.client import connect as sync_connect
from websockets.typing import Subprotocol

from . import duet, environment, workers
from . import protocol as P
from . import reference as ref
from .estimate import clock
from .phase import ProgressOut, to_stderr
from .protocol import Call
from .resources import ResourceSampler
from .result import build_phase
from .server_process import ServerProcess
from .spec import LoopKind, PhaseSpec


@dataclass
class Target:
    """The server under test: URL (+ token), and the process when the instrument owns it."""

    url: str
    token: str | None = None
    server: ServerProcess | None = None
    pid: int | None = None
    admin: bool = False   # server started with --allow-admin (or the user says it was)

    @property
    def managed(self) -> bool:
        """True when the instrument started the server (needed to restart it)."""
        return self.server is not None


@dataclass
class Action:
    """``fn`` runs on a thread ``at_s`` seconds after the phase starts; its dict is logged.

    ``fn`` receives the phase's stop event and may set it to end the phase early.
    """

    at_s: float
    name: str
    fn: Callable[[threading.Event], dict[str, Any]]


@dataclass
class Runner:
    """Shared settings of all phases of one run."""

    target: Target
    sampler: ResourceSampler | None = None
    workers: int = 1
    progress_s: float = 0.0
    t0: float = field(default_factory=time.perf_counter)
    #: the reference server of the host-corrected figures (when the profile asks for
    #: round pairs, see :meth:`run`)
    reference: ref.Reference | None = None
    #: (start, end) perf_counter of the last phase's measurement window
    last_window: tuple[float, float] = (0.0, 0.0)
    #: progress lines: "[scenario/profile] ..." with the run's elapsed and expected time
    label: str = ""
    expected_s: float | None = None
    out: ProgressOut | None = None
    #: remarks for the result document's notes (e.g. a file-descriptor limit too low)
    notes: list[str] = field(default_factory=list)
    _last_phase: str = ""

    def elapsed(self) -> str:
        """``run 12:34 of ~61:00`` (the expected part only when it is known)."""
        text = f"run {clock(time.perf_counter() - self.t0)}"
        return text + (f" of ~{clock(self.expected_s)}" if self.expected_s else "")

    def say(self, text: str) -> None:
        """One progress line (when progress is on): the scenario, ``text``, the clock."""
        if self.progress_s > 0 and self.out is not None:
            self.out(f"[{self.label}] {text} | {self.elapsed()}")

    def spec(self, name: str, loop: LoopKind, connections: int, call: Call,
             duration_s: float, **kw: Any) -> PhaseSpec:
        """A PhaseSpec aimed at the target with this run's common settings."""
        kw.setdefault("workers", self.workers)
        kw.setdefault("progress_s", self.progress_s if duration_s >= 10 else 0.0)
        return PhaseSpec(name=name, url=self.target.url, loop=loop,
                         connections=connections, call=call, duration_s=duration_s,
                         token=self.target.token, **kw)

    def run(self, spec: PhaseSpec, actions: list[Action] | None = None, *, pairs: int = 0,
            blocks: int = 8, settle_s: float = 0.0) -> dict[str, Any]:
        """Run one phase (with its actions), return its PHASE document.

        Actions count their ``at_s`` from the moment traffic starts (connections open),
        not from the call, so connecting 1000 sessions or spawning workers does not eat
        into the time before a restart or a failure injection.

        With ``pairs`` and a reference server, the phase is a duet instead
        (:mod:`duet`): up to ``pairs`` ABBA round pairs against the reference, pooled
        into ``blocks`` samples; the document is the target's rounds pooled, plus
        ``duet`` (the reference's side) and ``corrected`` (the host-corrected figures,
        :mod:`reference`).
        """
        if spec.name != self._last_phase:  # repeated rounds of one phase: one line
            self._last_phase = spec.name
            short = environment.nofile_shortfall(spec.connections)
            if short and short not in self.notes:
                self.notes.append(short)
                print(f"warning: {short}", file=sys.stderr, flush=True)
                if self.out is not to_stderr:
                    self.say(f"warning: {short}")
            load = {"open": f"{spec.rate:,.0f} msg/s" if spec.rate else "no traffic",
                    "closed": f"{spec.inflight} in flight each"}.get(spec.loop, spec.loop)
            self.say(f"phase {spec.name}: {spec.loop}, {spec.connections} connections, "
                     f"{load}, {spec.warmup_s + spec.duration_s:g} s")
        if pairs > 0 and self.reference is not None:
            if actions:
                raise ValueError(f"{spec.name}: timed actions do not run in a duet")
            return self._run_duet(spec, pairs, blocks, settle_s)
        stop = threading.Event()
        went = threading.Event()
        events: list[dict[str, Any]] = []
        threads = []
        for action in actions or []:
            th = threading.Thread(target=self._act, args=(action, went, stop, events),
                                  name=f"action-{action.name}", daemon=True)
            th.start()
            threads.append(th)
        if self.sampler is not None:
            self.sampler.mark()
        try:
            wire = workers.run_phase(spec, stop=stop, on_go=went.set,
                                     out=self._phase_line if self.out else None)
        finally:
            went.set()
            stop.set()
        if self.sampler is not None:
            self.sampler.mark()
        for th in threads:
            th.join(timeout=60)
        go = wire.get("go", time.perf_counter())
        self.last_window = (wire["window_start"], min(wire["window_end"],
                                                      wire.get("send_stopped", float("inf"))))
        for ev in events:
            ev["t_s"] = round(ev.pop("_at") - go, 3)
        return build_phase(spec, wire, self.sampler, events)

    def _phase_line(self, text: str) -> None:
        if self.out is not None:
            self.out(f"[{self.label}] {text} | {self.elapsed()}")

    def _run_duet(self, spec: PhaseSpec, pairs: int, blocks: int,
                  settle_s: float) -> dict[str, Any]:
        reference = self.reference
        assert reference is not None
        sides = {duet.COMMIT: duet.Side(duet.COMMIT, self.target.url, self.sampler),
                 duet.REFERENCE: duet.Side(duet.REFERENCE, reference.url,
                                           reference.sampler)}
        cut = duet.run(spec, sides, max_pairs=pairs, blocks=blocks, settle_s=settle_s,
                       latency_ms=reference.calibration.nominal.get(
                           reference.scenario, {}).get(f"{spec.name}.p50_ms"))
        phase = duet.side_phase(spec, sides[duet.COMMIT], cut, t0=self.t0)
        other = duet.side_phase(spec, sides[duet.REFERENCE], cut, t0=self.t0)
        phase["duet"] = {**cut.settings(), "reference": {"url": reference.url, **{
            k: other[k] for k in ("requests", "errors", "connection_errors", "connections",
                                  "throughput_msg_s", "us_per_msg", "latency_ms", "server",
                                  "generator", "blocks", "rounds")}}}
        phase["corrected"] = ref.correct_phase(reference.scenario, spec.name, phase["blocks"],
                                               other["blocks"], reference.calibration)
        rounds = sides[duet.COMMIT].rounds
        if rounds:
            self.last_window = (rounds[0].go, rounds[-1].end)
        return phase

    def _act(self, action: Action, went: threading.Event, stop: threading.Event,
             events: list[dict[str, Any]]) -> None:
        went.wait()
        if stop.wait(action.at_s):
            return
        at = time.perf_counter()
        try:
            info = action.fn(stop)
        except Exception as exc:  # recorded, the phase goes on
            info = {"error": f"{type(exc).__name__}: {exc}"}
        events.append({"name": action.name, "_at": at, **info})

    def settle(self, seconds: float) -> None:
        """Let the server settle (closing sockets, GC) before a resource reading."""
        time.sleep(seconds)

    def restart_server(self) -> dict[str, Any]:
        """Restart the managed server on the same port and re-point the sampler."""
        if self.target.server is None:
            raise RuntimeError("restart needs a server started by the instrument")
        info = self.target.server.restart()
        self.target.pid = self.target.server.pid
        if self.sampler is not None:
            self.sampler.set_pid(self.target.pid)
        return dict(info)

    def call(self, method: str, params: dict[str, Any] | None = None,
             timeout_s: float = 5.0) -> dict[str, Any]:
        """One request on a fresh session (admin calls, probes); returns the reply."""
        headers = {"Authorization": f"Bearer {self.target.token}"} if self.target.token \
            else None
        with sync_connect(self.target.url, subprotocols=[Subprotocol(P.SUBPROTOCOL)],
                          additional_headers=headers, open_timeout=timeout_s,
                          compression=None) as ws:
            ws.send(P.initialize_frame(0))
            json.loads(ws.recv(timeout=timeout_s))
            ws.send(P.INITIALIZED_NOTIFICATION)
            ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                                "params": params or {}}))
            while True:
                reply: dict[str, Any] = json.loads(ws.recv(timeout=timeout_s))
                if reply.get("id") == 1:
                    return reply
