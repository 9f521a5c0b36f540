"""Configuration: one TOML file with documented defaults (see scheduler.example.toml).

Why a typed dataclass tree rather than passing dicts around: every key is validated once,
at start-up, with a message that names the file and the key, so a typo never surfaces as a
KeyError in a job thread at 3 a.m. Secrets (Slack token, webhook URL) are excluded from
``repr`` so that logging a config object cannot leak them.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from .policy.thresholds import DETERMINISTIC, LIMITS_ONLY, JudgeConfig

DEFAULT_CONFIG_NAME = "scheduler.toml"


class ConfigError(Exception):
    """A configuration file is missing, unreadable or has an invalid value."""


@dataclass(frozen=True)
class RepositoryConfig:
    """What is watched: a local path or a git URL, and which branches."""

    url: str = "."
    branches: tuple[str, ...] = ("main",)
    # On the very first poll only this many newest commits per branch are queued; the
    # rest of the history is left to `backfill` (so `once` on a fresh state is quick).
    initial_commits: int = 1
    # Upper bound of commits queued per branch by a single poll (newest first).
    max_queue_per_poll: int = 50


@dataclass(frozen=True)
class AsvConfig:
    """Where the asv project lives in *this* checkout (the instrument never moves)."""

    config: Path = Path("asv.conf.json")
    benchmark_dir: Path | None = None  # default: the project's benchmark_dir, made absolute
    env_dir: Path | None = None  # default: <state>/env
    executable: tuple[str, ...] = ()  # default: the asv next to this interpreter
    machine: str = "default"  # load_config's default is the host name
    extra_args: tuple[str, ...] = ()
    run_timeout_s: float = 4 * 3600.0
    # Environment variables (names or shell patterns such as "MY_*") passed to asv and
    # side-by-side runs on top of the allow-list of scheduler/children.py.
    pass_env: tuple[str, ...] = ()
    # A run the scheduler died during this many times (out of memory, killed) is marked
    # failed instead of being queued again.
    max_attempts: int = 3
    # Not a key of [asv]: with runners, every machine's coordinator view shares the one
    # results directory <state>/results (scheduler.dispatch); None = <state>/results.
    results_dir: Path | None = None


@dataclass(frozen=True)
class ScheduleConfig:
    """When things run. All cron expressions are evaluated in UTC."""

    poll_interval_s: float = 60.0
    work_interval_s: float = 10.0
    nightly: str = "0 2 * * *"
    weekly_soak: str = ""  # empty disables the soak
    misfire_grace_time_s: int = 3600


@dataclass(frozen=True)
class ProfilesConfig:
    """BENCH_PROFILE per kind of job (see docs/ARCHITECTURE.md §5)."""

    premerge: str = "quick"
    nightly: str = "full"
    soak: str = "full"


@dataclass(frozen=True)
class SiteConfig:
    """The published asv site and the HTTP server that serves it."""

    html_dir: Path = Path("html")
    host: str = "127.0.0.1"
    port: int = 8090
    public_url: str = ""  # default: http://HOST:PORT/

    def base_url(self, port: int | None = None) -> str:
        """URL people use to reach the site (the configured public URL wins)."""
        if self.public_url:
            return self.public_url.rstrip("/") + "/"
        host = "localhost" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{port if port is not None else self.port}/"


@dataclass(frozen=True)
class SideBySideConfig:
    """The side-by-side check of each commit against its parent (scheduler.measure.side_by_side)."""

    # Off by default: instructions per message and per connection (deterministic) and
    # the host-corrected wall-clock figures measure what it was added for, inside asv.
    enabled: bool = False
    points: str = "10x1,churn10"  # versus --points: CPU per message, per connection
    rounds: int = 10
    duration_s: float = 2.0  # per round and side (plus 0.5 s warm-up)
    threshold: float = 0.05  # b/a above 1 + threshold ...
    alpha: float = 0.06  # ... and sign test below alpha, in each of two runs
    tool: str = "echo"
    timeout_s: float = 900.0


@dataclass(frozen=True)
class DispatchConfig:
    """Where measurements run (scheduler.dispatch). Without a broker: in this process."""

    broker: str = field(default="", repr=False)  # redis://HOST:PORT/DB; may hold a password
    # where each measurement goes, one measurement per entry: "any" (any runner),
    # "machine:NAME" (the runners started with --machine NAME), "queue:NAME" (--queue NAME)
    targets: tuple[str, ...] = ("any",)
    profile_targets: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (profile, targets)
    # Redis transport: an unacknowledged job of a lost runner is delivered again after this
    visibility_timeout_s: float = 900.0
    restore_interval_s: float = 10.0  # how often runners look for such jobs
    # a runner holds a lease on the job it measures, renewed every lease_s / 3
    lease_s: float = 60.0
    # a job neither queued in the broker, nor leased, nor finished for this long is sent
    # again (attempt + 1): the broker lost it
    lost_after_s: float = 120.0

    def targets_for(self, profile: str) -> tuple[str, ...]:
        return dict(self.profile_targets).get(profile, self.targets)


@dataclass(frozen=True)
class SlackConfig:
    """Slack delivery. backend: console (default), webhook or bot."""

    backend: str = "console"
    channel: str = ""
    token: str = field(default="", repr=False)
    webhook_url: str = field(default="", repr=False)
    base_url: str = "https://slack.com/api/"
    timeout_s: int = 30
    max_attempts: int = 8  # outbox attempts before a message is parked as "dead"
    upload_plots: bool = True


@dataclass(frozen=True)
class Config:
    """The whole configuration; paths are absolute after loading."""

    path: Path | None
    root: Path  # directory relative paths are resolved against
    repository: RepositoryConfig
    asv: AsvConfig
    schedule: ScheduleConfig
    profiles: ProfilesConfig
    site: SiteConfig
    judge: JudgeConfig
    slack: SlackConfig
    side_by_side: SideBySideConfig
    state_dir: Path
    baselines_dir: Path
    dispatch: DispatchConfig = DispatchConfig()

    def repo_is_local(self) -> bool:
        """A watched repository given as a path (not a URL) is used in place."""
        return not _looks_like_url(self.repository.url)

    def repo_path(self) -> Path:
        return (self.root / self.repository.url).resolve()


def default_machine_name() -> str:
    """The host name (asv's own default), reduced to characters safe in file names."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", socket.gethostname().split(".")[0]).strip("-")
    return name or "default"


def _looks_like_url(value: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*://", value)) or bool(
        re.match(r"^[\w.-]+@[\w.-]+:", value)
    )


_SECTIONS: dict[str, set[str]] = {
    "repository": {"url", "branches", "initial_commits", "max_queue_per_poll"},
    "asv": {"config", "benchmark_dir", "env_dir", "executable", "machine", "extra_args",
            "run_timeout_s", "pass_env", "max_attempts"},
    "schedule": {"poll_interval_s", "work_interval_s", "nightly", "weekly_soak",
                 "misfire_grace_time_s"},
    "profiles": {"premerge", "nightly", "soak"},
    "site": {"html_dir", "host", "port", "public_url"},
    "judge": {"default_threshold", "thresholds", "alpha", "min_samples", "use_asv_steps",
              "plot_history", "confirm", "deterministic", "deterministic_threshold",
              "limits_only"},
    "side_by_side": {"enabled", "points", "rounds", "duration_s", "threshold", "alpha", "tool",
               "timeout_s"},
    "slack": {"backend", "channel", "token", "webhook_url", "base_url", "timeout_s",
              "max_attempts", "upload_plots"},
    "dispatch": {"broker", "targets", "profile_targets", "visibility_timeout_s",
                 "restore_interval_s", "lease_s", "lost_after_s"},
    "state": {"dir"},
    "baselines": {"dir"},
}


class _Reader:
    """Typed access to one TOML table with errors that name file and key."""

    def __init__(self, source: str, section: str, table: dict[str, Any]) -> None:
        self.source, self.section, self.table = source, section, table
        unknown = set(table) - _SECTIONS[section]
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) in [{section}]: {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(_SECTIONS[section]))})"
            )

    def _err(self, key: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.source}: [{self.section}] {key}: {msg}")

    def get_str(self, key: str, default: str) -> str:
        value = self.table.get(key, default)
        if not isinstance(value, str):
            raise self._err(key, f"expected a string, got {type(value).__name__}")
        return value

    def get_num(self, key: str, default: float, *, minimum: float | None = None) -> float:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._err(key, f"expected a number, got {value!r}")
        if minimum is not None and value < minimum:
            raise self._err(key, f"must be >= {minimum}, got {value!r}")
        return float(value)

    def get_int(self, key: str, default: int, *, minimum: int | None = None) -> int:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._err(key, f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self._err(key, f"must be >= {minimum}, got {value!r}")
        return value

    def get_bool(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            raise self._err(key, f"expected true or false, got {value!r}")
        return value

    def get_strlist(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.table.get(key, list(default))
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._err(key, f"expected a list of strings, got {value!r}")
        return tuple(value)

    def get_cron(self, key: str, default: str, *, allow_empty: bool = False) -> str:
        value = self.get_str(key, default).strip()
        if not value and allow_empty:
            return ""
        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise self._err(key, f"invalid cron expression {value!r}: {exc}") from None
        return value


def load_config(path: Path | str | None = None, *, env: dict[str, str] | None = None) -> Config:
    """Load and validate a configuration file.

    ``path=None`` uses ``scheduler.toml`` in the current directory when it exists, and the
    built-in defaults (watch ".", console alerts) otherwise, so ``python -m scheduler once``
    works from a fresh checkout. Environment variables override secrets:
    ``SLACK_BOT_TOKEN``, ``SLACK_WEBHOOK_URL``, ``SLACK_CHANNEL``.
    """
    env = dict(os.environ) if env is None else env
    if path is None and Path(DEFAULT_CONFIG_NAME).is_file():
        path = DEFAULT_CONFIG_NAME
    cfg_path = Path(path).resolve() if path is not None else None
    source = str(cfg_path) if cfg_path else "<defaults>"
    data = _sections(_read(cfg_path) if cfg_path else {}, source)
    root = cfg_path.parent if cfg_path else Path.cwd().resolve()

    def sect(name: str) -> _Reader:
        return _Reader(source, name, data.get(name, {}))

    def path_of(value: str) -> Path:
        return (root / Path(value).expanduser()).resolve()

    return Config(
        path=cfg_path, root=root, repository=_repository(sect("repository")),
        asv=_asv(sect("asv"), path_of), schedule=_schedule(sect("schedule")),
        profiles=_profiles(sect("profiles")), site=_site(sect("site"), path_of),
        judge=_judge(sect("judge")), slack=_slack(sect("slack"), env),
        side_by_side=_side_by_side(sect("side_by_side")),
        state_dir=path_of(sect("state").get_str("dir", ".scheduler")),
        baselines_dir=path_of(sect("baselines").get_str("dir", "baselines")),
        dispatch=_dispatch(sect("dispatch"), env),
    )


def _read(cfg_path: Path) -> dict[str, Any]:
    try:
        with open(cfg_path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {cfg_path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{cfg_path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{cfg_path}: cannot read: {exc}") from None


def _sections(data: dict[str, Any], source: str) -> dict[str, Any]:
    """The file's tables by section, the deprecated and removed names dealt with."""
    if "paired" in data:  # the section's first name
        if "side_by_side" in data:
            raise ConfigError(f"{source}: [paired] and [side_by_side] are one section; keep "
                              "[side_by_side]")
        warnings.warn(f"{source}: [paired] is deprecated: rename the section to "
                      "[side_by_side] (read as [side_by_side] until then)", FutureWarning,
                      stacklevel=3)
        data = {("side_by_side" if k == "paired" else k): v for k, v in data.items()}
    unknown = set(data) - set(_SECTIONS)
    if unknown:
        raise ConfigError(
            f"{source}: unknown section(s): {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(_SECTIONS))})"
        )
    for name, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
    if "covers" in data.get("side_by_side", {}):
        raise ConfigError(f"{source}: [side_by_side] covers was removed: the side-by-side check "
                          "no longer keeps asv findings from being alerted (a judge with no "
                          "blind spots; see docs/SCHEDULER.md); delete the key")
    return data


def _repository(r: _Reader) -> RepositoryConfig:
    branches = r.get_strlist("branches", ("main",))
    if not branches:
        raise ConfigError(f"{r.source}: [repository] branches: at least one branch is needed")
    return RepositoryConfig(
        url=r.get_str("url", "."),
        branches=branches,
        initial_commits=r.get_int("initial_commits", 1, minimum=1),
        max_queue_per_poll=r.get_int("max_queue_per_poll", 50, minimum=1),
    )


def _asv(a: _Reader, path_of: Callable[[str], Path]) -> AsvConfig:
    bdir = a.get_str("benchmark_dir", "")
    edir = a.get_str("env_dir", "")
    machine = a.get_str("machine", default_machine_name())
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", machine):
        raise ConfigError(f"{a.source}: [asv] machine: use letters, digits, '.', '_', '-' only")
    return AsvConfig(
        config=path_of(a.get_str("config", "asv.conf.json")),
        benchmark_dir=path_of(bdir) if bdir else None,
        env_dir=path_of(edir) if edir else None,
        executable=a.get_strlist("executable", ()),
        machine=machine,
        extra_args=a.get_strlist("extra_args", ()),
        run_timeout_s=a.get_num("run_timeout_s", 4 * 3600.0, minimum=1),
        pass_env=a.get_strlist("pass_env", ()),
        max_attempts=a.get_int("max_attempts", 3, minimum=1),
    )


def _schedule(s: _Reader) -> ScheduleConfig:
    return ScheduleConfig(
        poll_interval_s=s.get_num("poll_interval_s", 60.0, minimum=1),
        work_interval_s=s.get_num("work_interval_s", 10.0, minimum=0.5),
        nightly=s.get_cron("nightly", "0 2 * * *"),
        weekly_soak=s.get_cron("weekly_soak", "", allow_empty=True),
        misfire_grace_time_s=s.get_int("misfire_grace_time_s", 3600, minimum=1),
    )


def _profiles(p: _Reader) -> ProfilesConfig:
    profiles = ProfilesConfig(
        premerge=p.get_str("premerge", "quick"),
        nightly=p.get_str("nightly", "full"),
        soak=p.get_str("soak", "full"),
    )
    for key in ("premerge", "nightly", "soak"):
        if not re.fullmatch(r"[A-Za-z0-9_-]+", getattr(profiles, key)):
            raise ConfigError(f"{p.source}: [profiles] {key}: not a profile name")
    return profiles


def _site(w: _Reader, path_of: Callable[[str], Path]) -> SiteConfig:
    return SiteConfig(
        html_dir=path_of(w.get_str("html_dir", "html")),
        host=w.get_str("host", "127.0.0.1"),
        port=w.get_int("port", 8090, minimum=0),
        public_url=w.get_str("public_url", ""),
    )


def _judge(j: _Reader) -> JudgeConfig:
    judge = JudgeConfig(
        default_threshold=j.get_num("default_threshold", 0.05, minimum=0),
        thresholds=_thresholds(j),
        alpha=j.get_num("alpha", 0.01, minimum=0),
        min_samples=j.get_int("min_samples", 5, minimum=1),
        use_asv_steps=j.get_bool("use_asv_steps", True),
        confirm=j.get_bool("confirm", True),
        plot_history=j.get_int("plot_history", 30, minimum=2),
        deterministic=j.get_str("deterministic", DETERMINISTIC),
        deterministic_threshold=j.get_num("deterministic_threshold", 0.015, minimum=0),
        limits_only=j.get_strlist("limits_only", LIMITS_ONLY),
    )
    for key, patterns in (("deterministic", (judge.deterministic,)),
                          ("limits_only", judge.limits_only)):
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"{j.source}: [judge] {key}: bad regex {pattern!r}: "
                                  f"{exc}") from None
    return judge


def _thresholds(j: _Reader) -> tuple[tuple[str, float], ...]:
    """[judge.thresholds]: regex = fraction, in the file's order (the first match wins)."""
    raw_thr = j.table.get("thresholds", {})
    if not isinstance(raw_thr, dict):
        raise ConfigError(f"{j.source}: [judge] thresholds: expected a table of regex = "
                          "fraction")
    thresholds: list[tuple[str, float]] = []
    for pattern, value in raw_thr.items():
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(
                f"{j.source}: [judge.thresholds] bad regex {pattern!r}: {exc}") from None
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(
                f"{j.source}: [judge.thresholds] {pattern!r}: expected a positive fraction, "
                f"got {value!r}"
            )
        thresholds.append((pattern, float(value)))
    return tuple(thresholds)


def _side_by_side(q: _Reader) -> SideBySideConfig:
    side_by_side = SideBySideConfig(
        enabled=q.get_bool("enabled", False),
        points=q.get_str("points", "10x1,churn10"),
        rounds=q.get_int("rounds", 10, minimum=2),
        duration_s=q.get_num("duration_s", 2.0, minimum=0.1),
        threshold=q.get_num("threshold", 0.05, minimum=0),
        alpha=q.get_num("alpha", 0.06, minimum=0),
        tool=q.get_str("tool", "echo"),
        timeout_s=q.get_num("timeout_s", 900.0, minimum=1),
    )
    if not re.fullmatch(r"(\d+x\d+|churn\d+)(,(\d+x\d+|churn\d+))*", side_by_side.points):
        raise ConfigError(f"{q.source}: [side_by_side] points: expected CONNxINFLIGHT or "
                          f"churnCONN items separated by commas, got {side_by_side.points!r}")
    return side_by_side


def _slack(k: _Reader, env: dict[str, str]) -> SlackConfig:
    """[slack]; the environment's SLACK_CHANNEL, SLACK_BOT_TOKEN, SLACK_WEBHOOK_URL win."""
    backend = k.get_str("backend", "console")
    if backend not in ("console", "webhook", "bot"):
        raise ConfigError(f"{k.source}: [slack] backend: expected console, webhook or bot, "
                          f"got {backend!r}")
    slack = SlackConfig(
        backend=backend,
        channel=env.get("SLACK_CHANNEL") or k.get_str("channel", ""),
        token=env.get("SLACK_BOT_TOKEN") or k.get_str("token", ""),
        webhook_url=env.get("SLACK_WEBHOOK_URL") or k.get_str("webhook_url", ""),
        base_url=k.get_str("base_url", "https://slack.com/api/"),
        timeout_s=k.get_int("timeout_s", 30, minimum=1),
        max_attempts=k.get_int("max_attempts", 8, minimum=1),
        upload_plots=k.get_bool("upload_plots", True),
    )
    if slack.backend == "bot" and not (slack.token and slack.channel):
        raise ConfigError(f"{k.source}: [slack] backend = \"bot\" needs a token (or env "
                          "SLACK_BOT_TOKEN) and a channel (or env SLACK_CHANNEL)")
    if slack.backend == "webhook" and not slack.webhook_url:
        raise ConfigError(f"{k.source}: [slack] backend = \"webhook\" needs webhook_url "
                          "(or env SLACK_WEBHOOK_URL)")
    return slack


def _dispatch(d: _Reader, env: dict[str, str]) -> DispatchConfig:
    """[dispatch]: the broker (env SCHEDULER_BROKER overrides) and the targets."""
    broker = env.get("SCHEDULER_BROKER") or d.get_str("broker", "")
    if broker and not re.match(r"^rediss?://", broker):
        raise d._err("broker", f"expected a redis:// or rediss:// URL, got {_redact(broker)!r}")
    targets = d.get_strlist("targets", ("any",))
    raw = d.table.get("profile_targets", {})
    if not isinstance(raw, dict):
        raise d._err("profile_targets", "expected a table of profile = [targets]")
    by_profile = []
    for profile, value in raw.items():
        sub = _Reader(d.source, "dispatch", {"targets": value})
        by_profile.append((str(profile), sub.get_strlist("targets", ())))
    for where, ts in (("targets", targets), *((f"profile_targets.{p}", t)
                                               for p, t in by_profile)):
        if not ts:
            raise d._err(where, "at least one target is needed")
        if len(set(ts)) != len(ts):
            raise d._err(where, f"a target is listed twice: {list(ts)}")
        for t in ts:
            if not re.fullmatch(r"any|(machine|queue):[A-Za-z0-9_.-]+", t):
                raise d._err(where, f"{t!r}: expected \"any\", \"machine:NAME\" or "
                                    "\"queue:NAME\" (NAME: letters, digits, '.', '_', '-')")
    cfg = DispatchConfig(
        broker=broker, targets=targets, profile_targets=tuple(by_profile),
        visibility_timeout_s=d.get_num("visibility_timeout_s", 900.0, minimum=1),
        restore_interval_s=d.get_num("restore_interval_s", 10.0, minimum=0.1),
        lease_s=d.get_num("lease_s", 60.0, minimum=1),
        lost_after_s=d.get_num("lost_after_s", 120.0, minimum=1),
    )
    if cfg.lease_s >= cfg.visibility_timeout_s:
        raise d._err("lease_s", f"must be shorter than visibility_timeout_s "
                                f"({cfg.visibility_timeout_s:g}): a job delivered again "
                                "after a lost runner must find its lease expired")
    return cfg


def _redact(url: str) -> str:
    """A broker URL without its password (for messages and ``status``)."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
