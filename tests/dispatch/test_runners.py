"""Benchmark runners on Celery with a real Redis broker: two real runners as separate
processes with different machine names, the coordinator as ``python -m scheduler once``.

The tests run in order on one deployment (``conftest.py``), as one coordinator's life:
three commits measured on both machines, then a runner killed with SIGKILL in the middle
of a run, then the broker and the coordinator restarted while jobs are in flight.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dispatch_helpers import (
    REPO_ROOT,
    Deployment,
    ledger,
    machine_runs,
    measured_lines,
    wait_for,
)
from sched_helpers import alerts_file, run_cli

pytestmark = pytest.mark.slow


def coordinator(dep: Deployment, *args: str) -> subprocess.Popen[str]:
    """``python -m scheduler once`` (or another command) in the background."""
    return subprocess.Popen([sys.executable, "-m", "scheduler", "--config", str(dep.config),
                             *(args or ("once",))], cwd=REPO_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"coordinator did not finish:\n{err[-4000:]}") from None
    assert proc.returncode == 0, out + err[-4000:]
    return err


def jobs_of(dep: Deployment, commit: str) -> list[dict[str, object]]:
    return [j for j in ledger(dep.state) if j["commit_hash"] == commit]


def asv_processes(runner_dir: Path) -> list[int]:
    """PIDs of processes whose command line names this runner's directory (its asv)."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes()
            except OSError:
                continue
            if str(runner_dir).encode() in cmd and b" worker" not in cmd.replace(b"\0", b" "):
                pids.append(int(p.name))
    return pids


def test_three_commits_on_two_machines_one_site_one_alert_per_machine(
        deployment: Deployment) -> None:
    dep = deployment
    a, b = dep.start_runners("a", "b")
    c1 = dep.repo.commit(0.010, "c1")
    c2 = dep.repo.commit(0.010, "c2")
    c3 = dep.repo.commit(0.020, "planted slowdown")
    err = finish(coordinator(dep), timeout=240)

    # every commit measured on both machines, each job once, on the machine it targeted
    for machine in ("a", "b"):
        assert machine_runs(dep.state, machine) == {c1: "done", c2: "done", c3: "done"}
    jobs = ledger(dep.state)
    assert all(j["status"] == "processed" for j in jobs), jobs
    keys = [(j["commit_hash"], j["profile"], j["machine"], j["kind"], j["attempt"])
            for j in jobs]
    assert len(keys) == len(set(keys))
    polls = [j for j in jobs if j["kind"] == "poll"]
    assert sorted((j["commit_hash"], j["machine"]) for j in polls) == sorted(
        (c, m) for c in (c1, c2, c3) for m in ("a", "b"))
    assert all(j["target"] == f"machine:{j['machine']}" for j in jobs)

    # the regression is confirmed on the machine that found it: the last good commit
    # again and the suspect, both on that machine (in either order: the coordinator
    # sends both at once, and which the ledger records first is a race)
    for machine, runner in (("a", a), ("b", b)):
        mine = [j for j in jobs if j["origin"] == machine]
        assert sorted((j["kind"], j["commit_hash"]) for j in mine) == [
            ("confirm", c3), ("confirm-base", c2)], mine
        assert all(j["machine"] == machine for j in mine)
        assert measured_lines(runner, c1) == 1
        assert measured_lines(runner, c2) == measured_lines(runner, c3) == 2

    # one history site: each machine its own series, every commit in it
    results = dep.state / "results"
    for machine in ("a-smoke", "b-smoke"):
        files = sorted(p.name for p in (results / machine).glob("*.json"))
        assert files == sorted(["machine.json", *(f"{c[:8]}-uv-py{sys.version_info.major}."
                                                  f"{sys.version_info.minor}.json"
                                                  for c in (c1, c2, c3))])
        assert json.loads((results / machine / "machine.json").read_text())["machine"] \
            == machine
    index = json.loads((dep.root / "html" / "index.json").read_text())
    assert {"a-smoke", "b-smoke"} <= set(index["params"]["machine"])
    assert {c1, c2, c3} <= set(index["revision_to_hash"].values())
    alerts_html = (dep.root / "html" / "alerts.html").read_text()
    assert "a-smoke" in alerts_html and "b-smoke" in alerts_html  # one page, every machine

    # one alert per machine, naming it, at the planted commit
    regressions = [x for x in alerts_file(dep.state) if x["kind"] == "regression"]
    assert sorted(re.search(r"\[(\w+-smoke)\]", str(x["text"])).group(1)  # type: ignore
                  for x in regressions) == ["a-smoke", "b-smoke"], regressions
    assert all(c3[:8] in str(x["text"]) for x in regressions)
    (dep.root / "once-1.log").write_text(err)
    assert re.search(r"\[a\] .* re-measuring", err) and re.search(r"\[b\] .* re-measuring", err)

    status = run_cli("--config", str(dep.config), "status")
    assert status.returncode == 0, status.stderr
    out = status.stdout
    assert "runners: 2" in out
    assert re.search(r"a@\S+\s+machine a\s+queues any, machine\.a\s+idle", out), out
    assert "machine a: 0 measuring, 0 queued, 1 open regression(s)" in out
    assert "machine b: 0 measuring, 0 queued, 1 open regression(s)" in out


def test_runner_killed_mid_run_the_job_completes_once_on_the_other(
        deployment: Deployment) -> None:
    dep = deployment
    dep.start_runners("a", "b", sleep=2)  # each measurement 2 s longer: time to kill one
    c4 = dep.repo.commit(0.010, "c4")
    proc = coordinator(dep, "backfill", f"{c4}^!", "--profile", "full", "--now")
    job = wait_for("the job to start on a runner",
                   lambda: next((j for j in jobs_of(dep, c4) if j["status"] == "started"),
                                None), 120)
    killed = dep.runners[str(job["machine"])]
    other = dep.runners["b" if job["machine"] == "a" else "a"]
    wait_for("asv to benchmark c4", lambda: "For tinyproj commit" in killed.text().partition(
        f"measuring {c4[:8]}")[2], 60)
    killed_dir = killed.directory(dep.state)
    killed.kill()
    # the killed runner's asv goes with it (its guard): nothing measures on there
    wait_for("the killed runner's asv to stop", lambda: not asv_processes(killed_dir), 20)
    err = finish(proc, timeout=120)

    rows = jobs_of(dep, c4)
    assert len(rows) == 1, rows  # no second attempt: the same job was delivered again
    (row,) = rows
    assert row["status"] == "processed" and row["attempt"] == 1
    assert row["machine"] == other.machine
    assert measured_lines(other, c4) == 1
    assert f"done {c4[:8]}" not in killed.text()
    assert machine_runs(dep.state, other.machine)[c4] == "done"
    assert c4 not in machine_runs(dep.state, killed.machine)
    assert list((dep.state / "results" / f"{other.machine}-full").glob(f"{c4[:8]}-*.json"))
    assert not list((dep.state / "results" / f"{killed.machine}-full").glob(f"{c4[:8]}-*"))
    assert f"measuring on machine {other.machine}" in err and "(again; was" in err
    # the killed runner comes back: nothing of the run it lost is left, and a machine
    # file asv was rewriting when the runner died (empty) does not stop its next job
    (killed_dir / "home" / ".asv-machine.json").write_text("")
    dep.start_runners(killed.machine, sleep=2)
    assert not list((killed_dir / "results").glob("*/*-*.json"))


def test_broker_and_coordinator_restart_lose_no_job(deployment: Deployment) -> None:
    dep = deployment
    dep.start_runners(*(m for m in ("a", "b") if m not in dep.runners), sleep=2)
    c5 = dep.repo.commit(0.010, "c5 does not build", broken_build=True)
    c6 = dep.repo.commit(0.010, "c6 fixes it")
    first = coordinator(dep)
    # both machines measure c6 (newest first) and c5 waits on each machine's queue
    wait_for("c6 measured on both machines", lambda: sum(
        j["status"] == "started" for j in jobs_of(dep, c6)) == 2, 120)
    wait_for("c5 waiting in the broker", lambda: sum(
        j["status"] == "sent" for j in jobs_of(dep, c5)) == 2, 30)
    os.killpg(first.pid, signal.SIGKILL)  # the coordinator dies ...
    first.communicate()
    # ... the broker loses one waiting job (as a broker without persistence would) ...
    assert dep.redis.client().delete("machine.b") == 1
    dep.redis.stop()  # ... and restarts, with c5 queued for a and c6 being measured
    time.sleep(1)
    dep.redis.start()
    err = finish(coordinator(dep), timeout=180)

    assert "collecting it" in err
    for m in ("a", "b"):
        assert machine_runs(dep.state, m)[c6] == "done"
        assert machine_runs(dep.state, m)[c5] == "failed"  # reported like today, per machine
        for commit in (c5, c6):
            assert measured_lines(dep.runners[m], commit) == 1
    failures = [str(x["text"]) for x in alerts_file(dep.state) if x["kind"] == "failure"]
    assert len(failures) == 2 and all(c5[:8] in f for f in failures), failures
    assert sorted(re.search(r"on machine (\w)", f).group(1)  # type: ignore[union-attr]
                  for f in failures) == ["a", "b"], failures
    c6_rows = jobs_of(dep, c6)
    assert sorted((j["machine"], j["attempt"], j["status"]) for j in c6_rows) == [
        ("a", 1, "processed"), ("b", 1, "processed")], c6_rows
    # what survived the restart is measured as sent; the lost job is sent again, once
    c5_rows = jobs_of(dep, c5)
    assert sorted((j["target"], j["attempt"], j["status"]) for j in c5_rows) == [
        ("machine:a", 1, "processed"), ("machine:b", 1, "superseded"),
        ("machine:b", 2, "processed")], c5_rows
    assert err.count("sending it again") == 1
