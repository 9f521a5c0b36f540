"""The parts of the distributed runners that need no broker: configuration, the job
protocol, the coordinator's ledger (a job is accepted once), and the guard that takes
asv along when its runner dies."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dispatch_helpers import REPO_ROOT, wait_for
from sched_helpers import run_cli

from scheduler.config import ConfigError, load_config
from scheduler.dispatch.coordinator import _may_meet
from scheduler.dispatch.ledger import Ledger
from scheduler.dispatch.protocol import (
    Job,
    Outcome,
    instrument_id,
    machine_of_queues,
    pack_dir,
    queue_of,
    result_name_ok,
    task_id,
    unpack_dir,
    worker_queues,
)
from scheduler.store.state import State

GUARD = REPO_ROOT / "scheduler" / "dispatch" / "guard.py"


def test_no_broker_means_in_process_and_targets_are_validated(tmp_path: Path) -> None:
    cfg = load_config(None, env={})
    assert cfg.dispatch.broker == "" and cfg.dispatch.targets == ("any",)
    path = tmp_path / "s.toml"
    path.write_text('[dispatch]\nbroker = "redis://:s3cret@h:6379/0"\n'
                    'targets = ["machine:a", "queue:gpu"]\n'
                    '[dispatch.profile_targets]\nfull = ["machine:nightly-1"]\n')
    cfg = load_config(path, env={})
    assert cfg.dispatch.targets_for("quick") == ("machine:a", "queue:gpu")
    assert cfg.dispatch.targets_for("full") == ("machine:nightly-1",)
    assert "s3cret" not in repr(cfg)
    shown = run_cli("--config", str(path), "config")
    assert shown.returncode == 0 and "s3cret" not in shown.stdout
    assert "redis://:***@h:6379/0" in shown.stdout
    assert load_config(path, env={"SCHEDULER_BROKER": "redis://other:1/0"}).dispatch.broker \
        == "redis://other:1/0"


@pytest.mark.parametrize(("text", "needle"), [
    ('broker = "amqp://h"', "[dispatch] broker: expected a redis:// or rediss:// URL"),
    ('targets = ["somewhere"]', "'somewhere': expected \"any\", \"machine:NAME\""),
    ('targets = ["any", "any"]', "a target is listed twice"),
    ("targets = []", "at least one target"),
    ("lease_s = 900", "must be shorter than visibility_timeout_s"),
    ("[dispatch.profile_targets]\nfull = ['machine:a b']", "profile_targets.full"),
])
def test_bad_dispatch_config_is_a_clear_error(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[dispatch]\n{text}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert needle in str(err.value)


def test_worker_without_a_broker_says_so(tmp_path: Path) -> None:
    proc = run_cli("--config", str(tmp_path / "none.toml"), "worker", "--machine", "a")
    assert proc.returncode == 2 and "not found" in proc.stderr
    (tmp_path / "s.toml").write_text("")
    proc = run_cli("--config", str(tmp_path / "s.toml"), "worker", "--machine", "a")
    assert proc.returncode == 2 and "no broker" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_protocol_names_and_messages(tmp_path: Path) -> None:
    assert queue_of("any") == "any"
    assert queue_of("machine:a") == "machine.a" and queue_of("queue:gpu") == "queue.gpu"
    with pytest.raises(ValueError):
        queue_of("machine:")
    queues = worker_queues("a", ("gpu",))
    assert queues == ["machine.a", "queue.gpu", "any"] and machine_of_queues(queues) == "a"
    tid = task_id("0123456789abcdef", "quick", "machine:a", "confirm", 2, "a")
    assert tid == "a/0123456789ab.quick.machine:a.confirm.2"
    job = Job(tid, "0123456789abcdef", "quick", "confirm", "machine:a", 2, "i", ("-b", "x"))
    assert Job.from_wire(json.loads(json.dumps(job.to_wire()))) == job
    out = Outcome("done", "a", "a@h", log="x" * 300_000)
    assert len(out.to_wire()["log"]) == 200_000
    with pytest.raises(ValueError):
        Outcome.from_wire({"status": "exploded"})
    # a run waits while a job for its commit may reach the same machine
    assert _may_meet("machine.a", "machine.a") and _may_meet("any", "machine.a")
    assert _may_meet("queue.gpu", "machine.b") and not _may_meet("machine.a", "machine.b")
    assert result_name_ok("01234567-virtualenv-py3.11.json", "0123456789")
    assert not result_name_ok("../01234567-x.json", "0123456789")
    # the instrument's documents of a run travel as one packed directory
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "capacity.json").write_text("{}")
    (docs / "sub" / "soak.json").write_text("[]")
    unpack_dir(pack_dir(docs), tmp_path / "copy")
    assert (tmp_path / "copy" / "sub" / "soak.json").read_text() == "[]"
    # the instrument's identity changes with any file of the suite
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    (bench / "a.py").write_text("x = 1\n")
    conf = tmp_path / "asv.conf.json"
    conf.write_text("{}")
    before = instrument_id(conf, bench)
    (bench / "a.py").write_text("x = 2\n")
    assert instrument_id(conf, bench) != before


def test_ledger_accepts_each_job_once_and_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    state = State(path)
    state.enqueue("c" * 40, "main", "quick", "poll", 1)
    run = state.next_queued()
    assert run is not None and state.claim(run.id)
    run = state.run_for("c" * 40, "quick")
    assert run is not None
    ledger = Ledger(path)
    a, b = ledger.add("", run, ("machine:a", "machine:b"))
    assert (a.queue, b.queue, a.attempt) == ("machine.a", "machine.b", 1)
    ledger.mark_sent(a.task_id)
    assert ledger.mark_started(a.task_id, "a", "a@h")
    assert not ledger.mark_started(a.task_id, "a", "a@h")  # said once
    assert ledger.store_outcome(a.task_id, {"status": "done", "machine": "a", "worker": "a@h"})
    assert not ledger.store_outcome(a.task_id, {"status": "done", "machine": "a", "worker": "x"})
    lost = ledger.supersede(b, "lost by the broker")
    assert lost.attempt == 2 and lost.status == "pending" and lost.task_id != b.task_id
    ledger.close()
    again = Ledger(path)  # a restarted coordinator finds every job where it was
    assert [(j.target, j.status) for j in again.open_jobs()] == [
        ("machine:a", "finished"), ("machine:b", "pending")]
    again.processed(a.task_id)
    again.processed(lost.task_id, request=(run.id, "done", "", "measured on a and b"))
    again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT status, judged FROM runs").fetchone() == ("done", 1)
    state.close()


def test_guard_takes_the_process_group_along_when_its_parent_dies(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # parent (a shell in its own session) -> guard -> a long sleep writing its pid
    script = (f"{sys.executable} {GUARD} -- sh -c 'echo $$ > {pidfile}; exec sleep 300' &"
              " wait")
    parent = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    try:
        wait_for("the guarded command", lambda: pidfile.exists() and pidfile.read_text(), 20)
        child = int(pidfile.read_text())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        wait_for("the guarded command to stop", lambda: not _alive(child), 20)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
    # and the command's own exit status comes through
    t0 = time.monotonic()
    rc = subprocess.run([sys.executable, str(GUARD), "--", "sh", "-c", "exit 3"]).returncode
    assert rc == 3 and time.monotonic() - t0 < 10


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False
