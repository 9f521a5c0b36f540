"""The coordinator's record of dispatched jobs: table ``dispatched`` in
``<state>/state.sqlite3``, beside the runs it serves (an additive table; the other tables
are untouched).

Why in the coordinator's state: it is what makes a job happen once. A job's identity is
(commit, profile, target, kind, attempt, origin) — its Celery task id — and the table
holds exactly one row per identity, so a coordinator restarted at any point finds each
job where it left it (waiting to be sent, sent, measuring on a runner, measured but not
yet judged) and neither sends it again nor loses it. An outcome is accepted once per
row; a second delivery of the same job is never a second measurement. A job the broker
lost is given up (``superseded``) and sent again as attempt + 1 in one transaction.

Life of a row: ``pending`` → ``sent`` → ``started`` (a runner holds its lease) →
``finished`` (the outcome is stored) → ``processed`` (its machine has judged it);
``superseded`` (lost, or the runner could not measure: a new attempt replaces it).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..store.state import Run, State
from .protocol import queue_of, task_id

SCHEMA = """
CREATE TABLE IF NOT EXISTS dispatched (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL UNIQUE,
    origin TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    commit_hash TEXT NOT NULL,
    branch TEXT NOT NULL,
    profile TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    queue TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    commit_date INTEGER NOT NULL DEFAULT 0,
    machine TEXT NOT NULL DEFAULT '',
    worker TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    sent_at REAL,
    started_at REAL,
    finished_at REAL,
    missing_since REAL,
    outcome TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT '',
    UNIQUE (origin, commit_hash, profile, target, kind, attempt)
);
CREATE INDEX IF NOT EXISTS dispatched_status ON dispatched (status, priority, commit_date);
"""

OPEN = ("pending", "sent", "started", "finished")
IN_FLIGHT = ("sent", "started")


@dataclass(frozen=True)
class Dispatched:
    """One job as the coordinator keeps it."""

    id: int
    task_id: str
    origin: str  # "" = the coordinator's queue of new commits; else that machine's queue
    run_id: int  # the run in the origin's state
    commit_hash: str
    branch: str
    profile: str
    kind: str
    target: str
    queue: str
    attempt: int
    status: str
    priority: int
    commit_date: int
    machine: str
    worker: str
    created_at: float
    sent_at: float | None
    started_at: float | None
    finished_at: float | None
    missing_since: float | None
    outcome: str
    note: str

    @property
    def short(self) -> str:
        return self.commit_hash[:8]

    def outcome_dict(self) -> dict[str, Any]:
        return json.loads(self.outcome) if self.outcome else {}


class Ledger(State):
    """The coordinator's state file seen through its ``dispatched`` table (its own
    connection: WAL lets it and the service's ``State`` share the file safely)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        with self._lock:
            self._db.executescript(SCHEMA)

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Dispatched]:
        return [_row(r) for r in self._query(sql, args)]

    # ---- reading ----------------------------------------------------------------------

    def get(self, tid: str) -> Dispatched | None:
        rows = self._rows("SELECT * FROM dispatched WHERE task_id = ?", (tid,))
        return rows[0] if rows else None

    def with_status(self, *statuses: str) -> list[Dispatched]:
        marks = ",".join("?" * len(statuses))
        return self._rows(f"SELECT * FROM dispatched WHERE status IN ({marks}) "
                          "ORDER BY priority DESC, commit_date DESC, id", statuses)

    def open_jobs(self) -> list[Dispatched]:
        return self.with_status(*OPEN)

    def of_run(self, origin: str, run_id: int) -> list[Dispatched]:
        """Every job of one run, newest attempt last."""
        return self._rows("SELECT * FROM dispatched WHERE origin = ? AND run_id = ? "
                          "ORDER BY id", (origin, run_id))

    def recent(self, limit: int = 20) -> list[Dispatched]:
        return self._rows("SELECT * FROM dispatched WHERE status IN ('finished', "
                          "'processed') ORDER BY finished_at DESC LIMIT ?", (limit,))

    # ---- writing ----------------------------------------------------------------------

    def add(self, origin: str, run: Run, targets: tuple[str, ...]) -> list[Dispatched]:
        """Pending jobs for a claimed run, one per target. A run measured before (a
        nightly head, a confirmation) gets the next attempt number: a new identity."""
        now = time.time()
        with self.tx() as db:
            for target in targets:
                attempt = _next_attempt(db, origin, run, target)
                db.execute(
                    "INSERT INTO dispatched (task_id, origin, run_id, commit_hash, branch, "
                    "profile, kind, target, queue, attempt, status, priority, commit_date, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                    (task_id(run.commit_hash, run.profile, target, run.kind, attempt, origin),
                     origin, run.id, run.commit_hash, run.branch, run.profile, run.kind,
                     target, queue_of(target), attempt, run.priority, run.commit_date, now))
        return [j for j in self.of_run(origin, run.id) if j.status == "pending"]

    def mark_sent(self, tid: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE dispatched SET status = 'sent', sent_at = ?, "
                       "missing_since = NULL WHERE task_id = ? AND status = 'pending'",
                       (time.time(), tid))

    def mark_started(self, tid: str, machine: str, worker: str) -> bool:
        """A runner holds the job's lease; True the first time it is seen."""
        with self.tx() as db:
            cur = db.execute(
                "UPDATE dispatched SET status = 'started', started_at = COALESCE(started_at,"
                " ?), machine = ?, worker = ?, missing_since = NULL WHERE task_id = ? AND "
                "status IN ('sent', 'started') AND (status = 'sent' OR worker != ?)",
                (time.time(), machine, worker, tid, worker))
            return cur.rowcount == 1

    def mark_missing(self, tid: str, since: float | None) -> None:
        with self.tx() as db:
            db.execute("UPDATE dispatched SET missing_since = ? WHERE task_id = ?",
                       (since, tid))

    def store_outcome(self, tid: str, outcome: dict[str, Any]) -> bool:
        """Store a job's outcome; False when it was already stored (accepted once)."""
        with self.tx() as db:
            cur = db.execute(
                "UPDATE dispatched SET status = 'finished', finished_at = ?, machine = ?, "
                "worker = ?, outcome = ?, missing_since = NULL WHERE task_id = ? AND status "
                "IN ('pending', 'sent', 'started')",
                (time.time(), str(outcome.get("machine", "")), str(outcome.get("worker", "")),
                 json.dumps(outcome), tid))
            return cur.rowcount == 1

    def supersede(self, job: Dispatched, note: str) -> Dispatched:
        """Give a job up and queue it again as attempt + 1 (one transaction)."""
        now = time.time()
        with self.tx() as db:
            db.execute("UPDATE dispatched SET status = 'superseded', note = ?, "
                       "finished_at = ? WHERE task_id = ?", (note[:2000], now, job.task_id))
            attempt = job.attempt + 1
            while db.execute("SELECT 1 FROM dispatched WHERE origin = ? AND commit_hash = ? "
                             "AND profile = ? AND target = ? AND kind = ? AND attempt = ?",
                             (job.origin, job.commit_hash, job.profile, job.target, job.kind,
                              attempt)).fetchone():
                attempt += 1
            tid = task_id(job.commit_hash, job.profile, job.target, job.kind, attempt,
                          job.origin)
            db.execute(
                "INSERT INTO dispatched (task_id, origin, run_id, commit_hash, branch, "
                "profile, kind, target, queue, attempt, status, priority, commit_date, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                (tid, job.origin, job.run_id, job.commit_hash, job.branch, job.profile,
                 job.kind, job.target, job.queue, attempt, job.priority, job.commit_date, now))
        new = self.get(tid)
        assert new is not None
        return new

    def processed(self, tid: str, *, request: tuple[int, str, str, str] | None = None) -> None:
        """The job's machine has judged it. With ``request`` = (run id, status, error,
        log), the coordinator's run it belonged to is finished in the same transaction
        (status, error and log of its jobs; judged, since the machines judged them)."""
        with self.tx() as db:
            db.execute("UPDATE dispatched SET status = 'processed' WHERE task_id = ?", (tid,))
            if request is not None:
                run_id, status, error, log = request
                db.execute("UPDATE runs SET status = ?, finished_at = ?, log = ?, error = ?, "
                           "judged = 1 WHERE id = ? AND status = 'running'",
                           (status, time.time(), log[-200_000:], error, run_id))


def _next_attempt(db: sqlite3.Connection, origin: str, run: Run, target: str) -> int:
    row = db.execute("SELECT MAX(attempt) FROM dispatched WHERE origin = ? AND commit_hash = ?"
                     " AND profile = ? AND target = ? AND kind = ?",
                     (origin, run.commit_hash, run.profile, target, run.kind)).fetchone()
    return int(row[0] or 0) + 1


def _row(r: sqlite3.Row) -> Dispatched:
    return Dispatched(**{k: r[k] for k in r.keys()})  # noqa: SIM118 (sqlite3.Row)
