"""The attacker of the ``bad_input`` scenario: bad input against a server, in its own process.

It runs while the instrument's well-behaved clients load the server, so it must not
share their interpreter (the GIL would turn its work into *their* latency): it is a
spawned process, connected and idle until :meth:`Attack.go`, bounded in time (its
``duration_s``, then ``grace_s`` to watch the server close what it must close) and in
count (every stream is paced at a fixed rate). What it sends:

* ``corpus``: ``connections`` sessions sending :mod:`badframes` frames at ``rate`` in
  total, every answer checked against the frame's contract answer;
* ``flood``: one session sending unknown methods in bursts of ``FLOOD_BURST`` at
  ``flood_rate`` in total (every one must get -32601);
* ``oversized``: fresh sessions, each sending one frame over ``max_frame_bytes``
  (must be closed with 1009), ``oversized_per_s`` of them;
* ``invalid_utf8``: raw sessions sending a text frame that is not UTF-8 (1007);
* ``non_readers``: raw sessions with a 4 KiB receive buffer that pipeline large echo
  calls and never read (the server must cut them: ``--send-timeout``, 1008), spread
  with ``invalid_utf8`` over the first third of the attack;
* ``half_open``: TCP connections that send a partial opening handshake, or nothing,
  and go silent (the server's opening-handshake timeout must close them).

The result is one JSON-able dict of counts (what was sent, how it was answered, which
connections the server closed, after how long).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import queue
import random
import socket
import threading
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from . import badframes, rawws
from .server_process import http_base

FLOOD_BURST = 50
#: After the last frame, how long answers may take before they count as missing.
ANSWER_WAIT_S = 10.0
#: Echo text of a non-reading client's calls; its answers must overflow kernel buffers.
NON_READER_TEXT = "n" * (64 * 1024)
NON_READER_CALLS = 100


@dataclass(frozen=True)
class AttackSpec:
    """Everything the attacker process needs (picklable)."""

    url: str
    token: str | None
    duration_s: float
    seed: int = 19
    rate: float = 400.0
    connections: int = 4
    flood_rate: float = 400.0
    oversized_per_s: float = 2.0
    max_frame_bytes: int = 262_144
    invalid_utf8: int = 4
    non_readers: int = 8
    half_open: int = 8
    #: After the attack: how long at most to watch for the server closing what it must.
    grace_s: float = 5.0
    #: Wait (within grace_s) for the half-open connections too, not just the non-readers.
    watch_half_open: bool = True


class Attack:
    """The attacker process: :meth:`start` (spawn, connect, wait), :meth:`go`, :meth:`finish`."""

    def __init__(self, spec: AttackSpec) -> None:
        self.spec = spec
        ctx = mp.get_context("spawn")  # the parent has sampler threads: never fork
        self._go = ctx.Event()
        self._stop = ctx.Event()
        self._ready = ctx.Event()
        self._results: Any = ctx.Queue()
        self._proc = ctx.Process(target=_child, name="bad-input-attacker", daemon=True,
                                 args=(spec, self._go, self._stop, self._ready, self._results))

    def start(self, timeout_s: float = 60.0) -> None:
        """Spawn the process and wait until its sessions are open."""
        self._proc.start()
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.2):
            if not self._proc.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"attacker did not start: {self._collect(1.0)}")

    def go(self) -> None:
        self._go.set()

    def finish(self) -> dict[str, Any]:
        """Stop sending, let it watch for ``grace_s``, return its counts."""
        self._stop.set()
        return self._collect(self.spec.grace_s + 30.0)

    def _collect(self, timeout_s: float) -> dict[str, Any]:
        try:
            out: dict[str, Any] = self._results.get(timeout=timeout_s)
        except queue.Empty:
            out = {"error": "the attacker returned no result"}
        self._proc.join(timeout=5)
        if self._proc.is_alive():
            self._proc.terminate()
        return out


def _child(spec: AttackSpec, go: Any, stop: Any, ready: Any, results: Any) -> None:
    try:
        results.put(asyncio.run(_attack(spec, go, stop, ready)))
    except BaseException:  # report, never hang the parent
        results.put({"error": traceback.format_exc()})


# --- the sessions that speak WebSocket --------------------------------------------------


class Tally:
    """What one kind of traffic saw: counts by outcome, plus a few examples of wrong ones."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: list[str] = []

    def wrong(self, text: str) -> None:
        self.counts["wrong"] += 1
        if len(self.examples) < 5:
            self.examples.append(text[:300])

    def to_json(self) -> dict[str, Any]:
        return {**dict(sorted(self.counts.items())), "wrong_examples": self.examples}


async def _open(spec: AttackSpec, tally: Tally) -> ClientConnection | None:
    headers = {"Authorization": f"Bearer {spec.token}"} if spec.token else None
    try:
        return await connect(spec.url, subprotocols=[Subprotocol("mcp")],
                             additional_headers=headers, open_timeout=10, compression=None,
                             ping_interval=None, max_size=None, close_timeout=2)
    except Exception as exc:
        tally.counts[f"connect_error:{type(exc).__name__}"] += 1
        return None


class CorpusSession:
    """One session sending corpus frames; checks every answer against its frame."""

    def __init__(self, ws: ClientConnection, frames: Iterator[badframes.BadFrame],
                 tally: Tally) -> None:
        self.ws = ws
        self.frames = frames
        self.tally = tally
        self.by_id: dict[Any, badframes.BadFrame] = {}
        self.null_codes: Counter[int] = Counter()

    def expect(self, frame: badframes.BadFrame) -> None:
        self.tally.counts["sent"] += 1
        self.tally.counts[f"kind:{frame.kind.split(':')[0]}"] += 1
        if frame.code is None:
            return
        if frame.id is None:
            self.null_codes[frame.code] += 1
        else:
            self.by_id[frame.id] = frame

    async def read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                msg = json.loads(raw)
                self.tally.counts["answers"] += 1
                if msg.get("id") is None:
                    code = (msg.get("error") or {}).get("code")
                    if isinstance(code, int) and self.null_codes[code] > 0:
                        self.null_codes[code] -= 1
                        self.tally.counts["right"] += 1
                    else:
                        self.tally.wrong(f"unexpected null-id answer {raw[:200]!r}")
                    continue
                expected = self.by_id.pop(msg["id"], None)
                if expected is None:
                    self.tally.wrong(f"answer to nothing sent {raw[:200]!r}")
                elif badframes.answer_matches(expected, msg):
                    self.tally.counts["right"] += 1
                else:
                    self.tally.wrong(f"{expected.kind}: got {raw[:200]!r}")

    def unanswered(self) -> int:
        return len(self.by_id) + sum(self.null_codes.values())

    async def settle(self, timeout_s: float = ANSWER_WAIT_S) -> None:
        """Wait for the answers still due (a server behind on a busy host), bounded."""
        deadline = time.monotonic() + timeout_s
        while self.unanswered() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)


async def _paced(rate: float, until: float, stop: Any, burst: int = 1) -> AsyncIterator[None]:
    """Yield once per ``burst`` frames, at ``rate`` frames per second, until ``until``."""
    interval = burst / rate
    next_t = time.monotonic()
    while time.monotonic() < until and not stop.is_set():
        now = time.monotonic()
        if now < next_t:
            await asyncio.sleep(next_t - now)
            continue
        next_t += interval
        yield


async def _corpus(spec: AttackSpec, sessions: list[CorpusSession], until: float,
                  stop: Any) -> None:
    async def one(session: CorpusSession) -> None:
        reader = asyncio.create_task(session.read())
        with contextlib.suppress(ConnectionClosed):
            async for _ in _paced(spec.rate / len(sessions), until, stop):
                frame = next(session.frames)
                session.expect(frame)
                await session.ws.send(frame.frame)
        await session.settle()
        await session.ws.close()
        await asyncio.wait_for(reader, 10)

    await asyncio.gather(*(one(s) for s in sessions))


async def _flood(spec: AttackSpec, session: CorpusSession, until: float, stop: Any) -> None:
    reader = asyncio.create_task(session.read())
    n = 0
    with contextlib.suppress(ConnectionClosed):
        async for _ in _paced(spec.flood_rate, until, stop, burst=FLOOD_BURST):
            for _ in range(FLOOD_BURST):
                n += 1
                frame = badframes.BadFrame(
                    "unknown_method", f'{{"jsonrpc":"2.0","id":"f{n}","method":"x/flood{n}"}}',
                    badframes.METHOD_NOT_FOUND, f"f{n}")
                session.expect(frame)
                await session.ws.send(frame.frame)
    await session.settle()
    await session.ws.close()
    await asyncio.wait_for(reader, 10)


async def _oversized(spec: AttackSpec, tally: Tally, until: float, stop: Any) -> None:
    text = "o" * (spec.max_frame_bytes + 1024)
    frame = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                        "params": {"name": "echo", "arguments": {"text": text}}})
    async for _ in _paced(spec.oversized_per_s, until, stop):
        ws = await _open(spec, tally)
        if ws is None:
            continue
        tally.counts["sent"] += 1
        try:
            await ws.send(frame)
            await asyncio.wait_for(ws.recv(), 10)
            tally.wrong("an oversized frame was answered")
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            tally.counts[f"closed:{code}"] += 1
        except TimeoutError:
            tally.wrong("an oversized frame was neither answered nor closed")
        finally:
            await ws.close()


# --- the raw-socket clients (a thread with blocking sockets) ---------------------------


def _auth(spec: AttackSpec) -> list[bytes]:
    return [b"Authorization: Bearer " + spec.token.encode()] if spec.token else []


def _port(spec: AttackSpec) -> int:
    return int(http_base(spec.url).rsplit(":", 1)[1])


def _raw_clients(spec: AttackSpec, go: Any, stop: Any, out: dict[str, Any]) -> None:
    """Invalid UTF-8, non-readers and half-open connections; watch them close all along.

    An opener thread starts them (sequentially: a non-reader's flood lasts until the
    server stops reading it) while this thread polls every watched socket's TCP state
    every 50 ms, so each close is timed when it happens, then for up to ``grace_s``
    after the attack.
    """
    go.wait()
    port = _port(spec)
    utf8 = Tally()
    # planned vs opened: a server that is slow to read lets fewer start within the attack
    nr: dict[str, Any] = {"planned": spec.non_readers, "opened": 0, "blocked": 0,
                          "closed_by_server": 0, "closed_after_stall_s": [],
                          "idle_closed_by_server": 0}
    ho: dict[str, Any] = {"planned": spec.half_open, "opened": 0, "closed_by_server": 0,
                          "closed_after_s": []}
    out.update(invalid_utf8=utf8.counts, non_readers=nr, half_open=ho)
    watched: list[tuple[str, socket.socket, float]] = []  # (kind, socket, since)
    lock = threading.Lock()
    end = time.monotonic() + spec.duration_s

    def opener() -> None:
        for i in range(spec.half_open):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                if i % 2 == 0:  # the other half sends nothing at all
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
            except OSError:
                continue
            with lock:
                ho["opened"] += 1
                watched.append(("half_open", sock, time.monotonic()))
        # The rest spread over the first third of the attack (a non-reader is cut a
        # --send-timeout after it stalls: most of that falls within the phase).
        events = ["utf8"] * spec.invalid_utf8 + ["non_reader"] * spec.non_readers
        random.Random(spec.seed).shuffle(events)
        gap = spec.duration_s / 3 / max(1, len(events))
        for kind in events:
            if stop.wait(gap) or time.monotonic() > end:
                break
            if kind == "utf8":
                _invalid_utf8(spec, port, utf8)
                continue
            got = _non_reader(spec, port, end)
            if got is not None:
                sock, since, blocked = got
                with lock:
                    nr["opened"] += 1
                    nr["blocked"] += blocked
                    watched.append(("non_reader" if blocked else "idle_non_reader", sock, since))

    thread = threading.Thread(target=opener, name="raw-opener", daemon=True)
    thread.start()
    closed: list[socket.socket] = []
    deadline = None
    try:
        while True:
            with lock:
                items = list(watched)
            for item in items:
                kind, sock, since = item
                if sock not in closed and rawws.peer_closed(sock):
                    closed.append(sock)
                    if kind == "idle_non_reader":  # (cut by the keepalive, if at all)
                        nr["idle_closed_by_server"] += 1
                        continue
                    info = nr if kind == "non_reader" else ho
                    info["closed_by_server"] += 1
                    key = "closed_after_stall_s" if kind == "non_reader" else "closed_after_s"
                    info[key].append(round(time.monotonic() - since, 2))
            open_ = [k for k, sock, _ in items if sock not in closed]
            if deadline is None and (stop.is_set() or time.monotonic() > end):
                deadline = time.monotonic() + spec.grace_s
            if deadline is not None and not thread.is_alive() and (
                time.monotonic() > deadline
                or not any(k == "non_reader" or spec.watch_half_open for k in open_)
            ):
                break
            time.sleep(0.05)
        nr["still_open"] = open_.count("non_reader")
        ho["still_open"] = open_.count("half_open")
    finally:
        thread.join(timeout=30)
        with lock:
            for _, sock, _ in watched:
                sock.close()


def _invalid_utf8(spec: AttackSpec, port: int, tally: Tally) -> None:
    try:
        sock, head = rawws.handshake(port, "/", _auth(spec))
    except OSError as exc:
        tally.counts[f"connect_error:{type(exc).__name__}"] += 1
        return
    with sock:
        if rawws.status(head) != 101:
            tally.wrong(f"handshake refused: {head[:80]!r}")
            return
        tally.counts["sent"] += 1
        sock.sendall(rawws.frame(b'{"jsonrpc":"2.0","id":1,"method":"\xff\xfe"}'))
        try:
            opcode, payload = rawws.read_frame(sock)
        except (OSError, ConnectionError):
            tally.counts["closed:none"] += 1
            return
        if opcode == rawws.OP_CLOSE:
            tally.counts[f"closed:{rawws.close_code(payload)}"] += 1
        else:
            tally.wrong(f"answered invalid UTF-8: {payload[:100]!r}")


def _non_reader(spec: AttackSpec, port: int,
                until: float = float("inf")) -> tuple[socket.socket, float, bool] | None:
    """A session that pipelines big echo calls (until ``until`` at most) and never reads.

    Returns (socket, when it stopped sending, whether it stopped because the server
    stopped reading it): only a client the server could not keep writing to is one its
    ``--send-timeout`` must cut; one that stopped early is merely idle.
    """
    try:
        sock, head = rawws.handshake(port, "/", _auth(spec), rcvbuf=4096)
    except OSError:
        return None
    if rawws.status(head) != 101:
        sock.close()
        return None
    frame = rawws.frame(json.dumps({"jsonrpc": "2.0", "id": "nr", "method": "tools/call",
                                    "params": {"name": "echo",
                                               "arguments": {"text": NON_READER_TEXT}}}))
    sock.settimeout(0.3)  # no progress for 0.3 s: the server stopped reading us
    sent = 0
    try:
        while sent < NON_READER_CALLS and time.monotonic() < until:
            sock.sendall(frame)
            sent += 1
    except (TimeoutError, OSError):
        return sock, time.monotonic(), True
    # all of them out: 6 MiB of answers are more than the kernel buffers hold
    return sock, time.monotonic(), sent == NON_READER_CALLS


# --- the whole attack ---------------------------------------------------------------------


async def _attack(spec: AttackSpec, go: Any, stop: Any, ready: Any) -> dict[str, Any]:
    corpus_tally, flood_tally, oversized_tally = Tally(), Tally(), Tally()
    sessions = []
    for i in range(spec.connections):
        ws = await _open(spec, corpus_tally)
        if ws is not None:
            sessions.append(CorpusSession(ws, badframes.corpus(spec.seed * 100 + i), corpus_tally))
    flood_ws = await _open(spec, flood_tally)
    flood = CorpusSession(flood_ws, iter(()), flood_tally) if flood_ws is not None else None
    raw: dict[str, Any] = {}
    raw_thread = threading.Thread(target=_raw_clients, args=(spec, go, stop, raw),
                                  name="raw-clients", daemon=True)
    raw_thread.start()
    ready.set()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, go.wait)
    cpu0 = time.process_time()
    until = time.monotonic() + spec.duration_s
    tasks = []  # a zero rate turns that part of the attack off
    if spec.oversized_per_s > 0:
        tasks.append(_oversized(spec, oversized_tally, until, stop))
    if sessions and spec.rate > 0:
        tasks.append(_corpus(spec, sessions, until, stop))
    if flood is not None and spec.flood_rate > 0:
        tasks.append(_flood(spec, flood, until, stop))
    await asyncio.gather(*tasks)
    await loop.run_in_executor(None, raw_thread.join, spec.grace_s + spec.duration_s + 30)
    for tally, group in ((corpus_tally, sessions), (flood_tally, [flood] if flood else [])):
        tally.counts["unanswered"] = sum(s.unanswered() for s in group if s is not None)
    return {
        "spec": {k: v for k, v in asdict(spec).items() if k != "token"},
        "corpus": corpus_tally.to_json(),
        "flood": flood_tally.to_json(),
        "oversized": oversized_tally.to_json(),
        "invalid_utf8": dict(sorted(raw.get("invalid_utf8", Counter()).items())),
        "non_readers": raw.get("non_readers", {}),
        "half_open": raw.get("half_open", {}),
        "attacker_cpu_s": round(time.process_time() - cpu0, 3),
    }
