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
