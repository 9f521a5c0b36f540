"""The watched repository as a URL (mirror + fetch), and set-up errors that are nobody's
commit's fault: clear message, nothing lost."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from sched_helpers import TinyRepo, run_cli, write_config

from scheduler.measure.gitrepo import GitError, GitRepo


def test_url_is_mirrored_and_fetched(tmp_path: Path, tiny_repo: TinyRepo) -> None:
    c1 = tiny_repo.commit(0.01, "one")
    repo = GitRepo(f"file://{tiny_repo.path}", local_path=None, mirror_dir=tmp_path / "m.git")
    repo.fetch()
    assert [c.hash for c in repo.first_parent("main")] == [c1]
    c2 = tiny_repo.commit(0.02, "two")
    repo.fetch()
    head = repo.head("main")
    assert head.hash == c2 and head.subject == "two" and "Ada Author" in head.author
    assert [c.hash for c in repo.rev_list(f"{c1}..{c2}")] == [c2]
    try:
        repo.first_parent("nope")
    except GitError as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("unknown branch accepted")


def test_missing_asv_config_is_clear_and_keeps_the_queue(tmp_path: Path, shared: Path,
                                                         tiny_repo: TinyRepo) -> None:
    c1 = tiny_repo.commit(0.01, "one")
    cfg = write_config(tmp_path, shared, tiny_repo)
    text = cfg.read_text().replace(str(shared / "asv.conf.json"), str(tmp_path / "no.json"))
    cfg.write_text(text)
    proc = run_cli("--config", str(cfg), "once")
    assert proc.returncode == 2
    assert "asv configuration not found" in proc.stderr and "Traceback" not in proc.stderr
    with sqlite3.connect(tmp_path / "state" / "state.sqlite3") as db:
        assert list(db.execute("SELECT commit_hash, status FROM runs")) == [(c1, "queued")]
    alerts = [json.loads(x) for x in (tmp_path / "state" / "alerts.jsonl").read_text()
              .splitlines()]
    assert len(alerts) == 1 and "cannot run asv" in alerts[0]["text"]


def test_lock_prevents_two_schedulers(tmp_path: Path) -> None:
    from scheduler.lock import LockBusyError, StateLock

    with StateLock(tmp_path):
        try:
            StateLock(tmp_path).acquire()
        except LockBusyError as exc:
            assert "another scheduler" in str(exc)
        else:
            raise AssertionError("second lock acquired")
    with StateLock(tmp_path):  # released: can be taken again
        pass


def test_asv_machine_file_rewritten_by_someone_else(tmp_path: Path, shared: Path,
                                                    tiny_repo: TinyRepo) -> None:
    """Another asv user of this HOME rewrites ~/.asv-machine.json (a test restoring its
    copy did, 2026-12-02): the daemon's next run must not fail for it."""
    import os

    from scheduler.config import load_config
    from scheduler.pipeline import Pipeline

    machine = f"machinefile{os.getpid()}"  # ours alone: other runs' machines untouched
    c1 = tiny_repo.commit(0.01, "one")
    cfg = write_config(tmp_path, shared, tiny_repo)
    cfg.write_text(cfg.read_text().replace('machine = "testbox"', f'machine = "{machine}"'))
    svc = Pipeline(load_config(cfg), verbose=False)
    try:
        svc.asv.write_config()
        svc.asv.ensure_machine("smoke")  # as an earlier run of this daemon did
        path = Path.home() / ".asv-machine.json"
        known = json.loads(path.read_text())
        known.pop(f"{machine}-smoke")
        path.write_text(json.dumps(known))
        svc.poll()
        assert svc.measure_queued() == 1
        assert svc.state.run_for(c1, "smoke").status == "done"  # type: ignore[union-attr]
    finally:
        svc.close()
