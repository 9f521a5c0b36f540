"""The state database across versions: one written by the code before the schema version
(tests/scheduler/data/state-v0.sql, made by main at 5bc3ac0) opens with the current code,
its data in the current names and tables, and nothing it said is said twice."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from scheduler.store.state import SCHEMA_VERSION, State, StateError

OLD = Path(__file__).parent / "data" / "state-v0.sql"
D = "d" * 40
SERIES = "side_by_side.server_cpu_per_message(tool='echo', point='10x1')"
KEY = f"side_by_side|bench-quick|{SERIES}|{D}"


def old_state(tmp_path: Path) -> Path:
    path = tmp_path / "state.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(OLD.read_text())
    db.close()
    return path


def test_an_old_state_opens_with_the_side_by_side_alerts_renamed(tmp_path: Path) -> None:
    state = State(old_state(tmp_path))
    try:
        alerts = {a["key"]: a for a in state.open_alerts()}
        assert set(alerts) == {KEY, f"history|bench-quick|suite.Suite.track_latency|{D}"}
        assert alerts[KEY]["kind"] == "side_by_side" and alerts[KEY]["benchmark"] == SERIES
        # the same finding after the upgrade: already open, its message already queued
        assert state.is_open(KEY)
        assert not state.outbox_put(f"alert|{KEY}|{D}", "regression", {"text": "again"})
        assert len(state.outbox_all()) == 2
    finally:
        state.close()
    db = sqlite3.connect(tmp_path / "state.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert not db.execute("SELECT key FROM alerts WHERE key LIKE 'paired%' OR kind = 'paired' "
                          "UNION SELECT key FROM outbox WHERE key LIKE '%paired%'").fetchall()


def test_a_state_is_migrated_once(tmp_path: Path) -> None:
    path = old_state(tmp_path)
    State(path).close()
    before = sqlite3.connect(path).execute("SELECT key, kind FROM alerts ORDER BY key").fetchall()
    State(path).close()  # a second open finds the current version: nothing to do
    assert sqlite3.connect(path).execute(
        "SELECT key, kind FROM alerts ORDER BY key").fetchall() == before


def test_a_state_of_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    State(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StateError, match="written by a newer version"):
        State(path)


def test_an_old_state_opens_with_its_meta_keys_in_their_tables(tmp_path: Path) -> None:
    """Every key family of the old ``meta`` table is in its table, read through the typed
    API, and gone from ``meta`` (only other parts' flags stay)."""
    a, b, c = "a" * 40, "b" * 40, "c" * 40
    state = State(old_state(tmp_path))
    try:
        assert state.confirm_base("quick", c) == b
        assert state.held_series("quick", c) == {"suite.Suite.track_latency"}
        assert not state.is_confirmed("quick", c) and state.is_confirmed("quick", D)
        assert state.held_series("quick", D) is None and state.confirm_base("quick", D) == ""
        verdict = state.side_by_side_verdict(D)
        assert [[p["point"] for p in run] for run in verdict] == [["10x1"], ["10x1"]]
        assert state.side_by_side_verdict(a) == {"skipped": "no toolserver to compare"}
        assert state.side_by_side_verdict(b) is None
        assert state.polled("main") and not state.polled("other")
        assert state.batch("nightly") == ("2026-12-01T02:00Z", {"main": D})
        assert state.batch("soak") == ("", {})
        assert state.child_group("asv") == (4242, "")
        assert state.child_group("side_by_side") == (0, "")
        assert state.get_meta("processed:bench-1/measure.dddddddd.1234") == "1"
    finally:
        state.close()
    db = sqlite3.connect(tmp_path / "state.sqlite3")
    assert [k for (k,) in db.execute("SELECT key FROM meta")] == [
        "processed:bench-1/measure.dddddddd.1234"]


def test_applying_a_judgement_writes_all_of_it_or_nothing(tmp_path: Path) -> None:
    """The apply step of a judgement is one transaction: when a part of it cannot be
    written, the runs it queued and the alerts it opened before are not there either."""
    from scheduler.store.state import AlertRecord, Judgement, NewCommit

    state = State(tmp_path / "state.sqlite3")
    try:
        state.record_commits("main", [NewCommit(h * 40, "dev", i, "s", queue=False)
                                      for i, h in enumerate("abc")], profile="quick",
                             kind="poll")
        msg = ("alert|k1|" + "c" * 40, "regression", {"text": "slower"})
        good = AlertRecord("k1", "history", "m", "s1", "a" * 40, "c" * 40, 1.0, 2.0, {}, msg)
        bad = AlertRecord("k2", "history", "m", "s2", "a" * 40, "c" * 40, 1.0, 2.0,
                          {"unserialisable": object()}, None)
        judgement = Judgement("main", "quick", bisect=(("b" * 40, 1),),
                              confirmation=("c" * 40, "a" * 40, {"a" * 40: 0, "c" * 40: 2},
                                            frozenset({"s1"})), alerts=(good, bad))
        with pytest.raises(TypeError):
            state.apply(judgement)
        assert not state.runs(status="queued") and not state.open_alerts()
        assert not state.outbox_all() and state.held_series("quick", "c" * 40) is None
        applied = state.apply(Judgement("main", "quick", bisect=judgement.bisect,
                                        confirmation=judgement.confirmation, alerts=(good,)))
        assert applied.bisected == (True,) and applied.confirmation == (True, True)
        assert applied.opened == (True,)
        assert {r.kind for r in state.runs(status="queued")} == {"bisect", "confirm-base",
                                                                  "confirm"}
        assert state.is_open("k1") and len(state.outbox_all()) == 1
        assert state.held_series("quick", "c" * 40) == {"s1"}
        again = state.apply(Judgement("main", "quick", alerts=(good,),
                                      recoveries=(("k1", ("recovery|k1|x", "recovery",
                                                          {"text": "back"})),)))
        assert again.opened == (False,) and again.recovered == (True,)
        assert not state.is_open("k1") and len(state.outbox_all()) == 2
    finally:
        state.close()


def test_a_nightly_batch_and_its_heads_are_queued_together(tmp_path: Path) -> None:
    from scheduler.store.state import NewCommit

    state = State(tmp_path / "state.sqlite3")
    try:
        heads = {"main": NewCommit("a" * 40, "dev", 1, "s", True),
                 "next": NewCommit("b" * 40, "dev", 2, "t", True)}
        assert state.enqueue_heads("nightly", "2026-12-02T02:00Z", "full", heads) == 2
        assert state.batch("nightly") == ("2026-12-02T02:00Z", {"main": "a" * 40,
                                                                "next": "b" * 40})
        assert {(r.commit_hash, r.kind, r.profile) for r in state.runs(status="queued")} == {
            ("a" * 40, "nightly", "full"), ("b" * 40, "nightly", "full")}
        broken = {"main": NewCommit("c" * 40, "dev", 3, "u", True),
                  "next": NewCommit(None, "dev", 4, "v", True)}  # type: ignore[arg-type]
        with pytest.raises(sqlite3.IntegrityError):
            state.enqueue_heads("nightly", "2026-12-03T02:00Z", "full", broken)
        assert state.batch("nightly")[0] == "2026-12-02T02:00Z"  # nothing of the second
        assert state.run_for("c" * 40, "full") is None
    finally:
        state.close()


def test_commits_of_one_second_are_measured_newest_first(tmp_path: Path) -> None:
    # a rebase or `git am` gives many commits the same date: the order git lists them in
    # (newest first) decides
    from scheduler.store.state import NewCommit

    state = State(tmp_path / "state.sqlite3")
    try:
        newest_first = [NewCommit(h * 40, "dev", 1000, h, True) for h in "cba"]
        assert state.record_commits("main", newest_first, profile="quick", kind="poll") == 3
        order = []
        while (run := state.next_queued()) is not None:
            order.append(run.commit_hash[0])
            assert state.claim(run.id)
        assert order == ["c", "b", "a"]
    finally:
        state.close()
