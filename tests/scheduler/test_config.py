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
    assert not cfg.side_by_side.enabled and cfg.side_by_side.points == "10x1,churn10"


def test_example_config_is_valid() -> None:
    cfg = load_config(REPO_ROOT / "scheduler.example.toml", env={})
    assert cfg.schedule.nightly
    assert cfg.judge.threshold_for("anything")[0] > 0



def test_the_side_by_side_section_is_still_read_under_its_first_name(tmp_path: Path) -> None:
    """``[paired]`` (the section's first name) works, with a warning that says what to do;
    both names at once is an error, not a silent choice."""
    path = tmp_path / "scheduler.toml"
    path.write_text("[paired]\nenabled = true\nrounds = 4\n")
    with pytest.warns(FutureWarning, match=r"\[paired\] is deprecated: rename the section to "
                                           r"\[side_by_side\]"):
        cfg = load_config(path, env={})
    assert cfg.side_by_side.enabled and cfg.side_by_side.rounds == 4
    path.write_text("[paired]\nrounds = 4\n[side_by_side]\nrounds = 6\n")
    with pytest.raises(ConfigError, match=r"\[paired\] and \[side_by_side\] are one section"):
        load_config(path, env={})

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
    ("[side_by_side]\npoints = '10 clients'",
     "[side_by_side] points: expected CONNxINFLIGHT or churnCONN"),
    ("[side_by_side]\nrounds = 1", "[side_by_side] rounds"),
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
