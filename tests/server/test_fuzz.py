"""Seeded fuzz run of the bad-input corpus: every frame gets exactly its contract answer.

The corpus (``benchmarks/load/badframes.py``, shared with the ``bad_input`` load
scenario) builds frames that are wrong in one known way each (a wrong type in every
field, malformed and over-deep JSON, huge ids, binary frames, unknown methods, ...) with
the answer docs/ARCHITECTURE.md section 2 prescribes. All of them go out pipelined on
one connection; each answer is matched to its frame (by id, or by code for answers that
must carry ``"id": null``), nothing is answered twice or left unanswered, and the same
connection and a new one are served normally afterwards. Bounded: a few hundred frames.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Callable

from serverproc import ServerProcess, call, request, rpc, text_of

from benchmarks.load.badframes import MAX_FRAME_BYTES, BadFrame, answer_matches, corpus

StartServer = Callable[..., ServerProcess]

FRAMES = 400
SEED = 19


def test_every_bad_frame_gets_its_contract_answer(start_server: StartServer) -> None:
    server = start_server("--max-frame-bytes", str(MAX_FRAME_BYTES), "--request-log", "none")
    frames = list(itertools.islice(corpus(SEED), FRAMES))
    kinds = Counter(f.kind for f in frames)
    assert len(kinds) >= 25, kinds  # the seed covers the corpus, not one corner of it
    by_id: dict[object, BadFrame] = {}
    null_codes: Counter[int] = Counter()
    for f in frames:
        if not f.answered:
            continue
        if f.id is None:
            assert f.code is not None
            null_codes[f.code] += 1
        else:
            assert f.id not in by_id, "corpus ids are unique"
            by_id[f.id] = f
    with server.connect(max_size=None) as ws, server.connect() as bystander:
        for f in frames:
            ws.send(f.frame)
        ws.send(request("ping", "sentinel"))
        wrong: list[str] = []
        got_null: Counter[int] = Counter()
        answered: set[object] = set()
        deadline = time.monotonic() + 30
        while True:
            msg = json.loads(ws.recv(30))
            if msg.get("id") == "sentinel":
                break
            assert time.monotonic() < deadline
            if msg.get("id") is None:
                got_null[msg["error"]["code"]] += 1
                continue
            expected = by_id.get(msg["id"])
            assert expected is not None, f"answer to no frame (or twice): {str(msg)[:200]}"
            assert msg["id"] not in answered, f"answered twice: {str(msg)[:200]}"
            answered.add(msg["id"])
            if not answer_matches(expected, msg):
                wrong.append(
                    f"{expected.kind}: sent {str(expected.frame)[:120]!r}, got {str(msg)[:200]}"
                )
        assert not wrong, "\n".join(wrong)
        assert answered == set(by_id), f"unanswered: {sorted(map(str, set(by_id) - answered))}"
        assert got_null == null_codes
        # Still a normal connection, and other clients never noticed.
        assert text_of(rpc(ws, call("echo", "after", text="still here"))) == "still here"
        assert text_of(rpc(bystander, call("echo", "b", text="fine"))) == "fine"
    with server.connect() as fresh:
        assert rpc(fresh, request("ping", 1))["result"] == {}
    assert server.proc.poll() is None
    assert "Traceback" not in server.stderr()
