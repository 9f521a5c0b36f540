"""Configuration: documented defaults load, bad files give one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from sched_helpers import REPO_ROOT, run_cli

from scheduler.config import ConfigError, load_config


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, env={})
    assert cfg.repository.url == "."
    assert cfg.repository.branches == ("main",)
    assert cfg.slack.backend == "console"
    assert cfg.state_dir == tmp_path / ".scheduler"
    assert cfg.site.base_url() == "http://127.0.0.1:8090/"
    assert not cfg.paired.enabled and cfg.paired.points == "10x1,churn10"


def test_example_config_is_valid() -> None:
    cfg = load_config(REPO_ROOT / "scheduler.example.toml", env={})
    assert cfg.schedule.nightly
    assert cfg.judge.threshold_for("anything")[0] > 0


@pytest.mark.parametrize(("text", "needle"), [
    ("[repository\nurl = 1", "invalid TOML"),
    ("[repository]\nbranch = ['main']", "unknown key(s) in [repository]: branch"),
    ("[nope]\nx = 1", "unknown section(s): nope"),
    ("[schedule]\npoll_interval_s = 'soon'", "[schedule] poll_interval_s: expected a number"),
    ("[schedule]\nnightly = '0 25 * * *'", "[schedule] nightly: invalid cron expression"),
    ("[slack]\nbackend = 'bot'", "needs a token"),
    ("[slack]\nbackend = 'pigeon'", "expected console, webhook or bot"),
    ("[judge.thresholds]\n'(' = 0.1", "bad regex"),
    ("[asv]\nmachine = 'a b'", "[asv] machine"),
    ("[paired]\npoints = '10 clients'", "[paired] points: expected CONNxINFLIGHT or churnCONN"),
    ("[paired]\nrounds = 1", "[paired] rounds"),
])
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_cli_reports_bad_config_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[schedule]\npoll_interval_s = -5\n")
    proc = run_cli("--config", str(path), "status")
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "poll_interval_s" in proc.stderr
    assert "Traceback" not in proc.stderr
    missing = run_cli("--config", str(tmp_path / "nope.toml"), "status")
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_secrets_come_from_env_and_are_never_printed(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text("[slack]\nbackend = 'bot'\nchannel = '#perf'\n")
    cfg = load_config(path, env={"SLACK_BOT_TOKEN": "xoxb-secret-123"})
    assert cfg.slack.token == "xoxb-secret-123"
    assert "xoxb-secret" not in repr(cfg)
    proc = run_cli("--config", str(path), "config", env={"SLACK_BOT_TOKEN": "xoxb-secret-123"})
    assert proc.returncode == 0, proc.stderr
    assert "xoxb-secret" not in proc.stdout + proc.stderr
    assert '"token": "<set>"' in proc.stdout


def test_help_lists_commands() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    for cmd in ("run", "once", "status", "bless", "backfill"):
        assert cmd in proc.stdout
