"""The scheduler's own state: runs, commits, alerts and the outbox, in one SQLite file.

Why SQLite and one file: every state change is a single transaction, so a SIGKILL at any
point leaves a consistent picture (a run is either queued, running, done or failed; an
alert either is in the outbox or is not). ``recover()`` turns whatever was ``running`` when
the daemon died back into ``queued``. The APScheduler job store lives in a separate file
(``jobs.sqlite3``) because APScheduler owns its schema.

A state change that must be announced takes its outbox message along (``message=``): the
alert that opens and its alert, the run that fails and its failure report, commit in one
transaction, so a SIGKILL can never leave an alert "already open" that was never queued.
Everything stored for delivery, and every run log, goes through ``scrub`` first
(``scheduler.redact``): no secret is kept or sent.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS commits (
    hash TEXT PRIMARY KEY,
    branch TEXT NOT NULL,
    author TEXT NOT NULL DEFAULT '',
    date INTEGER NOT NULL DEFAULT 0,
    subject TEXT NOT NULL DEFAULT '',
    first_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    commit_hash TEXT NOT NULL,
    branch TEXT NOT NULL,
    profile TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    commit_date INTEGER NOT NULL DEFAULT 0,
    queued_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    log TEXT NOT NULL DEFAULT '',
    judged INTEGER NOT NULL DEFAULT 0,
    UNIQUE (commit_hash, profile)
);
CREATE INDEX IF NOT EXISTS runs_queue ON runs (status, priority, commit_date);
CREATE TABLE IF NOT EXISTS alerts (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    series TEXT NOT NULL,
    benchmark TEXT NOT NULL,
    status TEXT NOT NULL,
    good_commit TEXT NOT NULL DEFAULT '',
    bad_commit TEXT NOT NULL DEFAULT '',
    before REAL,
    after REAL,
    detail TEXT NOT NULL DEFAULT '{}',
    opened_at REAL NOT NULL,
    closed_at REAL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    progress TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    sent_at REAL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- a regression held for an interleaved re-measurement (Pipeline._queue_confirmation)
CREATE TABLE IF NOT EXISTS confirmations (
    profile TEXT NOT NULL,
    commit_hash TEXT NOT NULL,         -- the suspect
    base TEXT NOT NULL DEFAULT '',     -- the last good commit re-measured before it ('' none)
    series TEXT,                       -- JSON list of the series held (NULL: none held)
    confirmed INTEGER NOT NULL DEFAULT 0,  -- its re-measurement (kind confirm) is done
    PRIMARY KEY (profile, commit_hash)
);
-- the side-by-side check of a commit against its parent, once per commit
CREATE TABLE IF NOT EXISTS side_by_side_verdicts (
    commit_hash TEXT PRIMARY KEY,
    verdict TEXT NOT NULL,             -- JSON: runs of point verdicts, or {"skipped": why}
    recorded_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS polls (
    branch TEXT PRIMARY KEY,
    polled_at REAL NOT NULL            -- the last poll of the branch (none: never polled)
);
-- the nightly (and soak) batch: its name and the branch heads it queued
CREATE TABLE IF NOT EXISTS nightly_batches (
    kind TEXT PRIMARY KEY,             -- nightly | soak
    batch TEXT NOT NULL,
    heads TEXT NOT NULL DEFAULT '{}'   -- JSON {branch: commit}
);
-- process groups of the children measuring now, stopped at the next start after a SIGKILL
CREATE TABLE IF NOT EXISTS child_groups (
    name TEXT PRIMARY KEY,             -- asv | side_by_side
    pgid INTEGER NOT NULL DEFAULT 0,   -- 0: not known (yet)
    work_dir TEXT NOT NULL DEFAULT ''
);
"""

#: The schema version, in SQLite's ``user_version``: opening a database of an older version
#: migrates it (``MIGRATIONS``, in one transaction); a newer one is refused.
SCHEMA_VERSION = 2


def _side_by_side_names(db: sqlite3.Connection) -> None:
    """0 -> 1: the side-by-side check's alerts were kind ``paired`` and their series
    ``paired.*``; the same alerts keep their keys' meaning under the new names, so an
    open one stays open (no second alert) and a message queued once stays single."""
    db.execute(
        "UPDATE alerts SET kind = 'side_by_side', "
        "key = 'side_by_side|' || replace(substr(key, 8), '|paired.', '|side_by_side.'), "
        "benchmark = 'side_by_side.' || substr(benchmark, 8) "
        "WHERE kind = 'paired' AND key LIKE 'paired|%' AND benchmark LIKE 'paired.%'")
    db.execute(
        "UPDATE outbox SET key = replace(replace(key, '|paired|', '|side_by_side|'), "
        "'|paired.', '|side_by_side.') "
        "WHERE key LIKE 'alert|paired|%' OR key LIKE 'recovery|paired|%'")


def _meta_to_tables(db: sqlite3.Connection) -> None:
    """1 -> 2: the key families of ``meta`` move into their tables (the rows leave meta)."""
    def family(prefix: str) -> list[tuple[str, str]]:
        rows = db.execute("SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?",
                          (len(prefix), prefix)).fetchall()
        return [(str(r[0])[len(prefix):], str(r[1])) for r in rows]

    def confirmation(rest: str) -> tuple[str, str]:
        profile, _, commit = rest.partition(":")
        db.execute("INSERT OR IGNORE INTO confirmations (profile, commit_hash) VALUES (?, ?)",
                   (profile, commit))
        return profile, commit

    for rest, value in family("confirm-base:"):
        db.execute("UPDATE confirmations SET base = ? WHERE profile = ? AND commit_hash = ?",
                   (value, *confirmation(rest)))
    for rest, value in family("confirm-series:"):
        db.execute("UPDATE confirmations SET series = ? WHERE profile = ? AND commit_hash = ?",
                   (value, *confirmation(rest)))
    for rest, value in family("confirmed:"):
        db.execute("UPDATE confirmations SET confirmed = ? WHERE profile = ? AND "
                   "commit_hash = ?", (int(bool(value)), *confirmation(rest)))
    now = time.time()
    for commit, value in family("paired:"):
        db.execute("INSERT OR REPLACE INTO side_by_side_verdicts VALUES (?, ?, ?)",
                   (commit, value, now))
    for branch, value in family("polled:"):
        try:
            polled_at = float(value)
        except ValueError:
            polled_at = now
        db.execute("INSERT OR REPLACE INTO polls VALUES (?, ?)", (branch, polled_at))
    for kind, value in family("batch:"):
        db.execute("INSERT INTO nightly_batches (kind, batch) VALUES (?, ?) "
                   "ON CONFLICT(kind) DO UPDATE SET batch = excluded.batch", (kind, value))
    for kind, value in family("batch-heads:"):
        db.execute("INSERT INTO nightly_batches (kind, batch, heads) VALUES (?, 'manual', ?) "
                   "ON CONFLICT(kind) DO UPDATE SET heads = excluded.heads", (kind, value))
    groups = dict(db.execute("SELECT key, value FROM meta WHERE key IN "
                             "('asv_pgid', 'paired_pgid', 'paired_dir')").fetchall())
    for name, pgid, work_dir in (("asv", groups.get("asv_pgid", ""), ""),
                                 ("side_by_side", groups.get("paired_pgid", ""),
                                  groups.get("paired_dir", ""))):
        if pgid.isdigit() or work_dir:
            db.execute("INSERT OR REPLACE INTO child_groups VALUES (?, ?, ?)",
                       (name, int(pgid) if pgid.isdigit() else 0, work_dir))
    db.execute("DELETE FROM meta WHERE key IN ('asv_pgid', 'paired_pgid', 'paired_dir') OR "
               + " OR ".join("substr(key, 1, ?) = ?" for _ in MOVED_FAMILIES),
               [x for prefix in MOVED_FAMILIES for x in (len(prefix), prefix)])


#: The meta key families :func:`_meta_to_tables` moves.
MOVED_FAMILIES = ("confirm-base:", "confirm-series:", "confirmed:", "paired:", "polled:",
                  "batch:", "batch-heads:")

#: MIGRATIONS[v] takes a database from version v to v + 1.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_side_by_side_names,
                                                                _meta_to_tables)
assert len(MIGRATIONS) == SCHEMA_VERSION


class StateError(Exception):
    """The state database cannot be used by this version (written by a newer one)."""


# Queue order: a higher priority first, then the newest commit first. A confirmation
# measures the last good commit again ("confirm-base") and then the suspect ("confirm"),
# so both outrank everything else and the base outranks the suspect (see
# ``Pipeline._queue_confirmation``).
PRIORITY = {"confirm-base": 360, "confirm": 350, "bisect": 300, "nightly": 250, "soak": 240,
            "poll": 200, "backfill": 100}
RUN_STATUSES = ("queued", "running", "done", "failed")

#: An outbox message: (key, kind, payload). The key makes it single: queued once, ever.
Message = tuple[str, str, dict[str, Any]]


@dataclass(frozen=True)
class NewCommit:
    """A commit a poll found, and whether this poll queues it."""

    hash: str
    author: str
    date: int
    subject: str
    queue: bool


@dataclass(frozen=True)
class Run:
    """One (commit, profile) measurement and where it stands."""

    id: int
    commit_hash: str
    branch: str
    profile: str
    kind: str
    status: str
    priority: int
    commit_date: int
    attempts: int
    error: str
    judged: bool

    @property
    def short(self) -> str:
        return self.commit_hash[:8]


@dataclass(frozen=True)
class OutboxItem:
    """A message that must reach the notifier exactly once."""

    id: int
    key: str
    kind: str
    payload: dict[str, Any]
    status: str
    attempts: int
    progress: dict[str, Any]
    last_error: str


@dataclass(frozen=True)
class AlertRecord:
    """An alert to open and the message that announces it (``State.open_alert``'s input)."""

    key: str
    kind: str
    series: str  # the asv machine
    benchmark: str  # the series id
    good: str
    bad: str
    before: float | None
    after: float | None
    detail: dict[str, Any]
    message: Message | None


@dataclass(frozen=True)
class Judgement:
    """What applying one judgement writes, in one transaction (``State.apply``): runs to
    bisect, a confirmation to queue, alerts to open with their messages, alerts to close
    silently, recoveries to close with their notes."""

    branch: str
    profile: str
    bisect: tuple[tuple[str, int], ...] = ()  # (commit, commit date)
    confirmation: tuple[str, str, Mapping[str, int], frozenset[str]] | None = None
    # ^ (suspect, last good or "", commit dates, series held)
    alerts: tuple[AlertRecord, ...] = ()
    close_silently: tuple[str, ...] = ()
    recoveries: tuple[tuple[str, Message], ...] = ()  # (alert key, recovery note)


@dataclass(frozen=True)
class Applied:
    """What ``State.apply`` changed, item by item (False: already so, nothing written)."""

    bisected: tuple[bool, ...]
    confirmation: tuple[bool, bool]  # base and suspect (re)queued
    opened: tuple[bool, ...]
    recovered: tuple[bool, ...]


class State:
    """Thread-safe access to the state database (one connection guarded by a lock)."""

    def __init__(self, path: Path, *, scrub: Callable[[str], str] | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.scrub: Callable[[str], str] = scrub or (lambda text: text)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30,
                                   isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=30000")
        with self._lock:
            self._db.executescript(SCHEMA)
        try:
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    def _migrate(self) -> None:
        with self.tx() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StateError(f"{self.path}: schema version {version} was written by a "
                                 f"newer version of the scheduler (this one knows up to "
                                 f"{SCHEMA_VERSION})")
            for step in MIGRATIONS[version:]:
                step(db)
            if version != SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE so readers in other processes never block it
        halfway)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, args))

    # ---- meta -------------------------------------------------------------------------

    def get_meta(self, key: str, default: str = "") -> str:
        """Free-form flags of other parts (``processed:<task>`` of a runner's job); what the
        service itself keeps has its table."""
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0]["value"]) if rows else default

    def set_meta(self, key: str, value: str) -> None:
        with self.tx() as db:
            _set_meta(db, key, value)

    # ---- confirmations ----------------------------------------------------------------

    def held_series(self, profile: str, commit: str) -> frozenset[str] | None:
        """The series whose regression at ``commit`` awaits its confirmation (None: none)."""
        rows = self._query("SELECT series FROM confirmations WHERE profile = ? AND "
                           "commit_hash = ? AND series IS NOT NULL", (profile, commit))
        return frozenset(json.loads(rows[0]["series"])) if rows else None

    def confirm_base(self, profile: str, commit: str) -> str:
        """The good commit re-measured right before ``commit``'s confirmation ("" if none)."""
        rows = self._query("SELECT base FROM confirmations WHERE profile = ? AND "
                           "commit_hash = ?", (profile, commit))
        return str(rows[0]["base"]) if rows else ""

    def is_confirmed(self, profile: str, commit: str) -> bool:
        """``commit``'s re-measurement (kind ``confirm``) is done."""
        return bool(self._query("SELECT 1 FROM confirmations WHERE profile = ? AND "
                                "commit_hash = ? AND confirmed", (profile, commit)))

    def mark_confirmed(self, profile: str, commit: str) -> None:
        with self.tx() as db:
            db.execute("INSERT INTO confirmations (profile, commit_hash, confirmed) "
                       "VALUES (?, ?, 1) ON CONFLICT(profile, commit_hash) DO UPDATE SET "
                       "confirmed = 1", (profile, commit))

    # ---- side-by-side verdicts --------------------------------------------------------

    def side_by_side_verdict(self, commit: str) -> Any:
        """What the side-by-side check of ``commit`` found: a list of runs (each a list of
        point verdicts as dicts), ``{"skipped": why}``, or None when it has not run."""
        rows = self._query("SELECT verdict FROM side_by_side_verdicts WHERE commit_hash = ?",
                           (commit,))
        return json.loads(rows[0]["verdict"]) if rows else None

    def record_side_by_side(self, commit: str, verdict: Any) -> None:
        with self.tx() as db:
            db.execute("INSERT OR REPLACE INTO side_by_side_verdicts VALUES (?, ?, ?)",
                       (commit, json.dumps(verdict), time.time()))

    # ---- polls ------------------------------------------------------------------------

    def polled(self, branch: str) -> bool:
        """The branch was polled before (its first poll queues fewer commits)."""
        return bool(self._query("SELECT 1 FROM polls WHERE branch = ?", (branch,)))

    # ---- nightly batches --------------------------------------------------------------

    def batch(self, kind: str) -> tuple[str, dict[str, str]]:
        """The current ``nightly``/``soak`` batch: its name ("" if none) and the branch
        heads it queued."""
        rows = self._query("SELECT batch, heads FROM nightly_batches WHERE kind = ?", (kind,))
        if not rows:
            return "", {}
        try:
            heads = dict(json.loads(rows[0]["heads"]))
        except (ValueError, TypeError):
            heads = {}
        return str(rows[0]["batch"]), heads

    def set_batch(self, kind: str, batch: str) -> None:
        """Name the batch (a runner's machine view takes the coordinator's name)."""
        with self.tx() as db:
            db.execute("INSERT INTO nightly_batches (kind, batch) VALUES (?, ?) "
                       "ON CONFLICT(kind) DO UPDATE SET batch = excluded.batch", (kind, batch))

    def enqueue_heads(self, kind: str, batch: str, profile: str,
                      heads: Mapping[str, NewCommit]) -> int:
        """Start a batch: remember its name and its heads (branch -> commit), record the
        commits and queue each with ``profile`` (re-measured if done before), in one
        transaction. Returns how many were (re)queued."""
        n = 0
        with self.tx() as db:
            db.execute("INSERT OR REPLACE INTO nightly_batches (kind, batch, heads) "
                       "VALUES (?, ?, ?)",
                       (kind, batch, json.dumps({b: c.hash for b, c in heads.items()})))
            for branch, c in heads.items():
                db.execute(
                    "INSERT OR IGNORE INTO commits (hash, branch, author, date, subject, "
                    "first_seen) VALUES (?, ?, ?, ?, ?, ?)",
                    (c.hash, branch, c.author, c.date, c.subject, time.time()))
                if _enqueue(db, c.hash, branch, profile, kind, c.date, requeue_done=True):
                    n += 1
        return n

    # ---- child process groups ---------------------------------------------------------

    def child_group(self, name: str) -> tuple[int, str]:
        """(process group, work directory) of the ``asv`` or ``side_by_side`` child that
        runs now, or ran when the daemon was killed; (0, "") when none is recorded."""
        rows = self._query("SELECT pgid, work_dir FROM child_groups WHERE name = ?", (name,))
        return (int(rows[0]["pgid"]), str(rows[0]["work_dir"])) if rows else (0, "")

    def set_child_group(self, name: str, pgid: int | None, work_dir: str = "") -> None:
        with self.tx() as db:
            db.execute("INSERT OR REPLACE INTO child_groups VALUES (?, ?, ?)",
                       (name, pgid or 0, work_dir))

    def clear_child_groups(self) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM child_groups")

    # ---- commits and runs -------------------------------------------------------------

    def record_commit(self, hash_: str, branch: str, author: str, date: int,
                      subject: str) -> bool:
        """Remember a commit; True when it was not known before."""
        with self.tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO commits (hash, branch, author, date, subject, "
                "first_seen) VALUES (?, ?, ?, ?, ?, ?)",
                (hash_, branch, author, date, subject, time.time()))
            return cur.rowcount > 0

    def record_commits(self, branch: str, commits: Iterable[NewCommit], *, profile: str,
                       kind: str, polled_at: float | None = None) -> int:
        """Remember the commits of one poll, queue those marked ``queue`` and record the
        poll (``polled_at``), in one transaction: a kill halfway never leaves a commit
        known but not queued (the next poll would skip it for good). Returns how many were
        queued."""
        queued = 0
        # ``commits`` come newest first, as git lists them; written oldest first, so that
        # among equal commit dates (a rebase, ``git am``: one second for many commits) the
        # queue's last tie-break, the newest row, is the newest commit
        with self.tx() as db:
            for c in reversed(list(commits)):
                db.execute(
                    "INSERT OR IGNORE INTO commits (hash, branch, author, date, subject, "
                    "first_seen) VALUES (?, ?, ?, ?, ?, ?)",
                    (c.hash, branch, c.author, c.date, c.subject, time.time()))
                if c.queue and _enqueue(db, c.hash, branch, profile, kind, c.date,
                                        requeue_done=False):
                    queued += 1
            if polled_at is not None:
                db.execute("INSERT OR REPLACE INTO polls VALUES (?, ?)", (branch, polled_at))
        return queued

    def known_commits(self) -> set[str]:
        return {r["hash"] for r in self._query("SELECT hash FROM commits")}

    def commit_info(self, hash_: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM commits WHERE hash = ?", (hash_,))
        return dict(rows[0]) if rows else None

    def enqueue(self, commit_hash: str, branch: str, profile: str, kind: str,
                commit_date: int, *, requeue_done: bool = False) -> bool:
        """Queue a measurement. An existing queued run keeps its place but takes the higher
        priority; a done/failed one is only re-run with ``requeue_done`` (nightly re-measures
        an unchanged head). True when something was (re)queued."""
        with self.tx() as db:
            return _enqueue(db, commit_hash, branch, profile, kind, commit_date,
                            requeue_done=requeue_done)

    def enqueue_confirmation(self, bad: str, base: str, branch: str, profile: str,
                             dates: Mapping[str, int], *,
                             series: Iterable[str]) -> tuple[bool, bool]:
        """Hold ``series`` at the suspect ``bad`` for confirmation and queue it, in one
        transaction: the last good commit ``base`` again (kind ``confirm-base``, unless
        ``base`` is empty) and the suspect again (kind ``confirm``). One transaction, so a
        crash never leaves half a pair queued. Returns whether the base and the suspect
        were (re)queued."""
        with self.tx() as db:
            return _enqueue_confirmation(db, bad, base, branch, profile, dates, series)

    def next_queued(self) -> Run | None:
        rows = self._query(
            "SELECT * FROM runs WHERE status = 'queued' "
            "ORDER BY priority DESC, commit_date DESC, id DESC LIMIT 1")
        return _run(rows[0]) if rows else None

    def claim(self, run_id: int) -> bool:
        """Mark a queued run as running (atomically; False if someone else took it)."""
        with self.tx() as db:
            cur = db.execute(
                "UPDATE runs SET status = 'running', started_at = ?, attempts = attempts + 1 "
                "WHERE id = ? AND status = 'queued'", (time.time(), run_id))
            return cur.rowcount == 1

    def finish(self, run_id: int, status: str, *, log: str = "", error: str = "",
               message: Message | None = None) -> bool:
        """Mark a run done or failed, with its report (``message``) in the same
        transaction. True when the message was queued now (not before)."""
        assert status in ("done", "failed")
        with self.tx() as db:
            db.execute("UPDATE runs SET status = ?, finished_at = ?, log = ?, error = ?, "
                       "judged = 0 WHERE id = ?",
                       (status, time.time(), self.scrub(log[-200_000:]), self.scrub(error),
                        run_id))
            return self._put(db, message)

    def requeue(self, run_id: int) -> None:
        """Put an abandoned run back at the head of its priority class. The attempt does
        not count (``attempts`` counts the starts the scheduler did not survive)."""
        with self.tx() as db:
            db.execute("UPDATE runs SET status = 'queued', started_at = NULL, "
                       "attempts = MAX(attempts - 1, 0) WHERE id = ? AND status = 'running'",
                       (run_id,))

    def mark_judged(self, run_id: int) -> None:
        with self.tx() as db:
            db.execute("UPDATE runs SET judged = 1 WHERE id = ?", (run_id,))

    def unjudged(self) -> list[Run]:
        """Finished runs whose judging was interrupted (oldest first)."""
        return [_run(r) for r in self._query(
            "SELECT * FROM runs WHERE status IN ('done', 'failed') AND judged = 0 "
            "ORDER BY finished_at")]

    def recover(self, *, give_up: Mapping[int, tuple[str, Message]] | None = None
                ) -> list[Run]:
        """Start-up: runs left ``running`` by a killed daemon go back to the queue, except
        those in ``give_up`` (run id -> (error, failure report)): they are marked failed
        and their report queued, in the same transaction. Returns the re-queued runs."""
        give_up = give_up or {}
        with self.tx() as db:
            rows = list(db.execute("SELECT * FROM runs WHERE status = 'running'"))
            for r in rows:
                if r["id"] in give_up:
                    error, message = give_up[r["id"]]
                    db.execute("UPDATE runs SET status = 'failed', finished_at = ?, "
                               "error = ?, judged = 0 WHERE id = ?",
                               (time.time(), self.scrub(error), r["id"]))
                    self._put(db, message)
                else:
                    db.execute("UPDATE runs SET status = 'queued', started_at = NULL "
                               "WHERE id = ?", (r["id"],))
        return [_run(r) for r in rows if r["id"] not in give_up]

    def runs(self, *, status: str | None = None, profile: str | None = None,
             limit: int = 1000) -> list[Run]:
        sql, args = "SELECT * FROM runs WHERE 1=1", []
        if status:
            sql += " AND status = ?"
            args.append(status)
        if profile:
            sql += " AND profile = ?"
            args.append(profile)
        sql += " ORDER BY priority DESC, commit_date DESC, id DESC LIMIT ?"
        args.append(str(limit))
        return [_run(r) for r in self._query(sql, tuple(args))]

    def run_for(self, commit_hash: str, profile: str) -> Run | None:
        rows = self._query("SELECT * FROM runs WHERE commit_hash = ? AND profile = ?",
                           (commit_hash, profile))
        return _run(rows[0]) if rows else None

    def run_log(self, run_id: int) -> str:
        rows = self._query("SELECT log FROM runs WHERE id = ?", (run_id,))
        return str(rows[0]["log"]) if rows else ""

    def recent_finished(self, limit: int = 10) -> list[dict[str, Any]]:
        return [dict(r) for r in self._query(
            "SELECT id, commit_hash, branch, profile, kind, status, finished_at, error "
            "FROM runs WHERE status IN ('done', 'failed') ORDER BY finished_at DESC LIMIT ?",
            (limit,))]

    def run_details(self, status: str, limit: int, *, log_tail: int = 0,
                    profile: str | None = None) -> list[dict[str, Any]]:
        """Runs of one status with their times, error and the last ``log_tail`` characters
        of the log (read-only, for the alerts page and estimates): queued ones in queue
        order, running ones by start, finished ones newest first."""
        order = {"queued": "priority DESC, commit_date DESC, id DESC",
                 "running": "started_at"}.get(status, "finished_at DESC")
        sql = ("SELECT id, commit_hash, branch, profile, kind, status, queued_at, started_at, "
               "finished_at, attempts, error, substr(log, -?) AS log_tail FROM runs "
               "WHERE status = ?")
        args: list[Any] = [max(log_tail, 1), status]
        if profile:
            sql += " AND profile = ?"
            args.append(profile)
        rows = [dict(r) for r in self._query(f"{sql} ORDER BY {order} LIMIT ?",
                                             (*args, limit))]
        for r in rows:
            if not log_tail:
                r["log_tail"] = ""
        return rows

    def count_runs(self, status: str) -> int:
        return int(self._query("SELECT count(*) AS n FROM runs WHERE status = ?",
                               (status,))[0]["n"])

    def status_of(self, profile: str) -> dict[str, str]:
        """commit -> run status for one profile (used to find measured neighbours)."""
        return {r["commit_hash"]: r["status"] for r in self._query(
            "SELECT commit_hash, status FROM runs WHERE profile = ?", (profile,))}

    # ---- alerts -----------------------------------------------------------------------

    def is_open(self, key: str) -> bool:
        rows = self._query("SELECT 1 FROM alerts WHERE key = ? AND status = 'open'", (key,))
        return bool(rows)

    def open_alert(self, key: str, kind: str, series: str, benchmark: str, *,
                   good: str, bad: str, before: float | None, after: float | None,
                   detail: dict[str, Any], message: Message | None = None) -> bool:
        """Record a regression and queue its alert ``message``, in one transaction. False
        when this regression is already open (one regression, one alert)."""
        with self.tx() as db:
            return self._open(db, AlertRecord(key, kind, series, benchmark, good, bad, before,
                                              after, detail, message))

    def _open(self, db: sqlite3.Connection, a: AlertRecord) -> bool:
        row = db.execute("SELECT status FROM alerts WHERE key = ?", (a.key,)).fetchone()
        if row is not None and row["status"] == "open":
            return False
        db.execute(
            "INSERT OR REPLACE INTO alerts (key, kind, series, benchmark, status, "
            "good_commit, bad_commit, before, after, detail, opened_at) "
            "VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?)",
            (a.key, a.kind, a.series, a.benchmark, a.good, a.bad, a.before, a.after,
             json.dumps(a.detail), time.time()))
        self._put(db, a.message)
        return True

    def open_alerts(self, *, series: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM alerts WHERE status = 'open'"
        args: tuple[str, ...] = ()
        if series is not None:
            sql, args = sql + " AND series = ?", (series,)
        out = []
        for r in self._query(sql + " ORDER BY opened_at", args):
            d = dict(r)
            d["detail"] = json.loads(d["detail"])
            out.append(d)
        return out

    def alerts(self, limit: int = 200) -> list[dict[str, Any]]:
        """Open and closed alerts, open ones first, newest first (read-only)."""
        out = []
        for r in self._query("SELECT * FROM alerts ORDER BY status = 'open' DESC, "
                             "opened_at DESC LIMIT ?", (limit,)):
            d = dict(r)
            d["detail"] = json.loads(d["detail"])
            out.append(d)
        return out

    def close_alert(self, key: str, *, message: Message | None = None) -> bool:
        """Close an open alert and queue its recovery ``message``, in one transaction.
        False (and nothing queued) when it was not open."""
        with self.tx() as db:
            return self._close(db, key, message)

    def _close(self, db: sqlite3.Connection, key: str, message: Message | None) -> bool:
        cur = db.execute("UPDATE alerts SET status = 'closed', closed_at = ? "
                         "WHERE key = ? AND status = 'open'", (time.time(), key))
        if cur.rowcount != 1:
            return False
        self._put(db, message)
        return True

    def apply(self, j: Judgement) -> Applied:
        """Apply one judgement in one transaction: a kill at any point leaves all of it or
        none of it (the judgement is then repeated at the next start)."""
        with self.tx() as db:
            bisected = tuple(_enqueue(db, commit, j.branch, j.profile, "bisect", date,
                                      requeue_done=False) for commit, date in j.bisect)
            queued = (False, False)
            if j.confirmation is not None:
                bad, base, dates, series = j.confirmation
                queued = _enqueue_confirmation(db, bad, base, j.branch, j.profile, dates,
                                               series)
            opened = tuple(self._open(db, a) for a in j.alerts)
            for key in j.close_silently:
                self._close(db, key, None)
            recovered = tuple(self._close(db, key, note) for key, note in j.recoveries)
        return Applied(bisected, queued, opened, recovered)

    # ---- outbox -----------------------------------------------------------------------

    def outbox_put(self, key: str, kind: str, payload: dict[str, Any]) -> bool:
        """Add a message once: the same key is never queued twice."""
        with self.tx() as db:
            return self._put(db, (key, kind, payload))

    def _put(self, db: sqlite3.Connection, message: Message | None) -> bool:
        """``outbox_put`` inside a transaction the caller holds (None: nothing to put)."""
        if message is None:
            return False
        key, kind, payload = message
        cur = db.execute(
            "INSERT OR IGNORE INTO outbox (key, kind, payload, created_at) VALUES (?, ?, ?, ?)",
            (key, kind, json.dumps(_scrubbed(payload, self.scrub)), time.time()))
        return cur.rowcount == 1

    def outbox_due(self, now: float | None = None) -> list[OutboxItem]:
        now = time.time() if now is None else now
        return [_outbox(r) for r in self._query(
            "SELECT * FROM outbox WHERE status = 'pending' AND next_attempt_at <= ? "
            "ORDER BY id", (now,))]

    def outbox_all(self, status: str | None = None) -> list[OutboxItem]:
        if status:
            rows = self._query("SELECT * FROM outbox WHERE status = ? ORDER BY id", (status,))
        else:
            rows = self._query("SELECT * FROM outbox ORDER BY id")
        return [_outbox(r) for r in rows]

    def outbox_with_prefix(self, prefix: str) -> list[tuple[float, OutboxItem]]:
        """(created_at, message) of every message whose key starts with ``prefix``, oldest
        first (read-only: what was said about one alert, the latest nightly summary)."""
        rows = self._query("SELECT * FROM outbox WHERE substr(key, 1, ?) = ? ORDER BY id",
                           (len(prefix), prefix))
        return [(float(r["created_at"]), _outbox(r)) for r in rows]

    def outbox_progress(self, item_id: int, progress: dict[str, Any]) -> None:
        """Persist a partial delivery (e.g. the message ts before the plot upload) so a
        retry does not post the message again."""
        with self.tx() as db:
            db.execute("UPDATE outbox SET progress = ? WHERE id = ?",
                       (json.dumps(progress), item_id))

    def outbox_sent(self, item_id: int) -> None:
        with self.tx() as db:
            db.execute("UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1"
                       " WHERE id = ?", (time.time(), item_id))

    def outbox_failed(self, item_id: int, error: str, retry_at: float, *, dead: bool) -> None:
        with self.tx() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, "
                "next_attempt_at = ?, status = ? WHERE id = ?",
                (error[:2000], retry_at, "dead" if dead else "pending", item_id))


def _enqueue(db: sqlite3.Connection, commit_hash: str, branch: str, profile: str, kind: str,
             commit_date: int, *, requeue_done: bool) -> bool:
    """``State.enqueue`` inside a transaction the caller holds."""
    prio = PRIORITY[kind]
    now = time.time()
    row = db.execute("SELECT * FROM runs WHERE commit_hash = ? AND profile = ?",
                     (commit_hash, profile)).fetchone()
    if row is None:
        db.execute(
            "INSERT INTO runs (commit_hash, branch, profile, kind, status, priority, "
            "commit_date, queued_at) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
            (commit_hash, branch, profile, kind, prio, commit_date, now))
        return True
    if row["status"] == "queued":
        if prio > row["priority"]:
            db.execute("UPDATE runs SET priority = ?, kind = ? WHERE id = ?",
                       (prio, kind, row["id"]))
        return False
    if row["status"] in ("done", "failed") and requeue_done:
        db.execute(
            "UPDATE runs SET status = 'queued', kind = ?, priority = ?, queued_at = ?, "
            "error = '', judged = 0, attempts = 0 WHERE id = ?", (kind, prio, now, row["id"]))
        return True
    return False


def _enqueue_confirmation(db: sqlite3.Connection, bad: str, base: str, branch: str,
                          profile: str, dates: Mapping[str, int],
                          series: Iterable[str]) -> tuple[bool, bool]:
    db.execute("INSERT INTO confirmations (profile, commit_hash, base, series) "
               "VALUES (?, ?, ?, ?) ON CONFLICT(profile, commit_hash) DO UPDATE SET "
               "base = excluded.base, series = excluded.series",
               (profile, bad, base, json.dumps(sorted(series))))
    queued_base = bool(base) and _enqueue(db, base, branch, profile, "confirm-base",
                                          dates.get(base, 0), requeue_done=True)
    queued_bad = _enqueue(db, bad, branch, profile, "confirm", dates.get(bad, 0),
                          requeue_done=True)
    return queued_base, queued_bad


def _set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
               "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))


def _scrubbed(value: Any, scrub: Callable[[str], str]) -> Any:
    """A JSON-like value with ``scrub`` applied to every string in it."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v, scrub) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v, scrub) for v in value]
    return value


def _run(r: sqlite3.Row) -> Run:
    return Run(id=r["id"], commit_hash=r["commit_hash"], branch=r["branch"],
               profile=r["profile"], kind=r["kind"], status=r["status"],
               priority=r["priority"], commit_date=r["commit_date"], attempts=r["attempts"],
               error=r["error"], judged=bool(r["judged"]))


def _outbox(r: sqlite3.Row) -> OutboxItem:
    return OutboxItem(id=r["id"], key=r["key"], kind=r["kind"],
                      payload=json.loads(r["payload"]), status=r["status"],
                      attempts=r["attempts"], progress=json.loads(r["progress"]),
                      last_error=r["last_error"])
