"""The service's verdicts as a static page next to asv's: ``<html>/alerts.html``.

Open and closed alerts (kind, series, machine, commit range and first bad commit, change,
significance, what was crossed, the plot and the graph link), the runs (running, queued,
the last finished ones with the tail of a failed run's log) and the latest nightly and
soak summaries.

Why a static page: the site is static files, served by the daemon's thread or by any web
server; the service rewrites this page after every publish and judgement, so it is as
fresh as asv's own pages. ``collect`` reads the state database (read-only), ``render`` is
a pure function of that plain data, ``write`` puts the page and the alerts' plots into
the published directory. Everything that comes from commits (subjects, authors, logs) or
from the suite (benchmark names) is escaped.
"""

from __future__ import annotations

import datetime as _dt
import html
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..results import format_value
from ..store.state import State
from .offline_site import PUBLISHED_VENDOR, add_nav, install_vendor
from .plot import plot_name
from .site import PAGES, graph_link

PAGE = "alerts.html"
BOOTSTRAP_CSS = f"{PUBLISHED_VENDOR}/bootstrap-3.1.1/css/bootstrap.min.css"
ALERTS_SHOWN = 200
QUEUED_SHOWN = 15
FINISHED_SHOWN = 25
LOG_TAIL_CHARS = 3000

KIND_TITLES = {"history": "regression against the recent history",
               "baseline": "slower than the blessed baseline",
               "limit": "limit breached",
               "side_by_side": "regression side by side with the parent"}


@dataclass(frozen=True)
class CommitRef:
    hash: str
    subject: str = ""
    author: str = ""

    @property
    def short(self) -> str:
        return self.hash[:8]


@dataclass(frozen=True)
class AlertView:
    kind: str  # history | baseline | limit | side_by_side
    status: str  # open | closed
    series: str  # benchmark id with its parameters
    machine: str  # asv machine (<machine>-<profile>)
    change: str
    significance: str
    crossed: str
    good: CommitRef | None  # last good commit (None for a limit or a baseline)
    bad: CommitRef
    opened_at: float
    closed_at: float | None
    recovery: str  # the recovery note ("" while open)
    link: str  # into asv's graph, relative to the site
    plot: str  # file name under _plots/ ("" without a plot)


@dataclass(frozen=True)
class RunView:
    commit: CommitRef
    branch: str
    profile: str
    kind: str
    status: str  # queued | running | done | failed
    queued_at: float | None
    started_at: float | None
    finished_at: float | None
    error: str
    log_tail: str


@dataclass(frozen=True)
class SummaryView:
    kind: str  # nightly | soak
    created_at: float
    text: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class AlertsPage:
    generated_at: float
    alerts: tuple[AlertView, ...]
    running: tuple[RunView, ...]
    queued: tuple[RunView, ...]
    queued_total: int
    finished: tuple[RunView, ...]
    summaries: tuple[SummaryView, ...]
    pages: tuple[tuple[str, str], ...] = PAGES


# ---- reading the state ----------------------------------------------------------------

def collect(state: State, plots_dir: Path, *, now: float | None = None) -> AlertsPage:
    """The page's data from the state database (read-only)."""
    commits: dict[str, CommitRef] = {}

    def ref(h: str) -> CommitRef:
        if h not in commits:
            info = state.commit_info(h) or {}
            commits[h] = CommitRef(h, str(info.get("subject", "")), str(info.get("author", "")))
        return commits[h]

    alerts = tuple(_alert_view(state, a, ref, plots_dir) for a in state.alerts(ALERTS_SHOWN))

    def runs(status: str, limit: int, tail: int = 0) -> list[RunView]:
        return [RunView(ref(r["commit_hash"]), r["branch"], r["profile"], r["kind"],
                        r["status"], r["queued_at"], r["started_at"], r["finished_at"],
                        r["error"] or "", r["log_tail"] or "")
                for r in state.run_details(status, limit, log_tail=tail)]

    finished = sorted(runs("done", FINISHED_SHOWN, LOG_TAIL_CHARS)
                      + runs("failed", FINISHED_SHOWN, LOG_TAIL_CHARS),
                      key=lambda r: r.finished_at or 0, reverse=True)[:FINISHED_SHOWN]
    summaries = []
    for kind in ("nightly", "soak"):
        said = state.outbox_with_prefix(f"summary|{kind}|")  # Pipeline._maybe_summary's key
        if said:
            created, item = said[-1]
            summaries.append(SummaryView(kind, created, str(item.payload.get("text", "")),
                                         tuple(str(x) for x in item.payload.get("details",
                                                                                []))))
    return AlertsPage(
        generated_at=time.time() if now is None else now, alerts=alerts,
        running=tuple(runs("running", 10)), queued=tuple(runs("queued", QUEUED_SHOWN)),
        queued_total=state.count_runs("queued"), finished=tuple(finished),
        summaries=tuple(summaries))


def _alert_view(state: State, a: dict[str, Any], ref: Any, plots_dir: Path) -> AlertView:
    detail: dict[str, Any] = a["detail"]
    unit = str(detail.get("unit", ""))
    # what the alert said when it was sent (Pipeline._alert's and _recoveries' keys)
    said = state.outbox_with_prefix(f"alert|{a['key']}|")
    sent = next((item.payload for _t, item in reversed(said)
                 if item.key == f"alert|{a['key']}|{a['bad_commit']}"),
                said[-1][1].payload if said else {})
    recovery = ""
    if a["status"] == "closed":
        notes = [item.payload for t, item in state.outbox_with_prefix(
            f"recovery|{a['key']}|") if t >= a["opened_at"]]
        recovery = str(notes[-1].get("text", "")) if notes else ""
    params = tuple((str(k), str(v)) for k, v in detail.get("params", []))
    good, bad = a["good_commit"], a["bad_commit"]
    link = graph_link(".", str(detail.get("benchmark", a["benchmark"])), params,
                      a["series"], (good, bad) if good else ("", bad))
    plot = plot_name(a["key"])
    return AlertView(
        kind=a["kind"], status=a["status"], series=a["benchmark"], machine=a["series"],
        change=str(sent.get("change") or _change(a["kind"], a["before"], a["after"], unit)),
        significance=str(sent.get("significance") or _said(sent, "significance: ")),
        crossed=str(sent.get("crossed") or _said(sent, "crossed: ")),
        good=ref(good) if good else None, bad=ref(bad), opened_at=a["opened_at"],
        closed_at=a["closed_at"], recovery=recovery, link=link,
        plot=plot if (plots_dir / plot).is_file() else "")


def _said(payload: dict[str, Any], prefix: str) -> str:
    """A fact from the lines of a message sent before the message carried it as a field."""
    for line in payload.get("details", []):
        if str(line).startswith(prefix):
            return str(line)[len(prefix):]
    return ""


def _change(kind: str, before: float | None, after: float | None, unit: str) -> str:
    if after is None:
        return ""
    pct = f" ({(after / before - 1) * 100:+.1f}%)" if before else ""
    if kind == "limit":
        return f"{format_value(after, unit)} > limit {format_value(before, unit)}{pct}"
    return f"{format_value(before, unit)} → {format_value(after, unit)}{pct}"


# ---- the page ---------------------------------------------------------------------------

def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _when(t: float | None) -> str:
    if not t:
        return ""
    return _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _duration(a: float | None, b: float | None) -> str:
    if not a or not b or b < a:
        return ""
    s = round(b - a)
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def _commit(c: CommitRef | None) -> str:
    if c is None:
        return "—"
    extra = f" {_e(c.subject)}" if c.subject else ""
    by = f' <span class="text-muted">— {_e(c.author)}</span>' if c.author else ""
    return f'<code title="{_e(c.hash)}">{_e(c.short)}</code>{extra}{by}'


def _nav(pages: Sequence[tuple[str, str]], current: str) -> str:
    items = [('index.html#/', "Benchmark grid"), ('index.html#/summarylist', "Benchmark list"),
             ('index.html#/regressions', "Regressions"), *pages]
    active = ' class="active"'
    lis = "".join(f'<li{active if href == current else ""}><a href="{_e(href)}">'
                  f'{_e(title)}</a></li>' for href, title in items)
    return ('<nav class="navbar navbar-default navbar-fixed-top" role="navigation">'
            '<div class="container-fluid"><span class="navbar-brand">Benchmarks</span>'
            f'<ul class="nav navbar-nav">{lis}</ul></div></nav>')


def _alert(a: AlertView) -> str:
    style = "danger" if a.status == "open" else "default"
    rows = [("kind", f"{_e(a.kind)}: {_e(KIND_TITLES.get(a.kind, a.kind))}"),
            ("series", f"<code>{_e(a.series)}</code>"),
            ("machine", f"<code>{_e(a.machine)}</code>"),
            ("change", f"<strong>{_e(a.change)}</strong>")]
    if a.significance:
        rows.append(("significance", _e(a.significance)))
    if a.crossed:
        rows.append(("crossed", _e(a.crossed)))
    rng = f"{a.good.short}..{a.bad.short}" if a.good else a.bad.short
    rows += [("commits", f"<code>{_e(rng)}</code>"), ("first bad", _commit(a.bad))]
    if a.good:
        rows.append(("last good", _commit(a.good)))
    rows.append(("opened", _e(_when(a.opened_at))))
    if a.status == "closed":
        rows.append(("closed", _e(_when(a.closed_at)) + (f": {_e(a.recovery)}" if a.recovery
                                                        else "")))
    facts = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    plot = (f'<img class="img-responsive plot" src="_plots/{_e(a.plot)}" '
            f'alt="history of {_e(a.series)}">' if a.plot else
            '<p class="text-muted">no plot</p>')
    return (f'<div class="panel panel-{style} alert-item" data-kind="{_e(a.kind)}" '
            f'data-status="{_e(a.status)}" data-series="{_e(a.series)}" '
            f'data-bad="{_e(a.bad.hash)}" data-good="{_e(a.good.hash if a.good else "")}">'
            f'<div class="panel-heading"><span class="label label-{style}">{_e(a.kind)}'
            f'</span> <strong>{_e(a.series)}</strong> on <code>{_e(a.machine)}</code>: '
            f'{_e(a.change)} at <code>{_e(a.bad.short)}</code></div>'
            '<div class="panel-body"><div class="row"><div class="col-md-6">'
            f'<dl class="dl-horizontal">{facts}</dl>'
            f'<a class="btn btn-default graph-link" href="{_e(a.link)}">Open the graph with '
            'the commits highlighted</a></div>'
            f'<div class="col-md-6">{plot}</div></div></div></div>')


STATUS_LABEL = {"done": "success", "failed": "danger", "running": "info", "queued": "default"}


def _run_row(r: RunView) -> str:
    when = {"queued": _when(r.queued_at), "running": "since " + _when(r.started_at)}.get(
        r.status, _when(r.finished_at))
    took = _duration(r.started_at, r.finished_at) if r.status in ("done", "failed") else ""
    row = (f'<tr class="run" data-commit="{_e(r.commit.hash)}" data-status="{_e(r.status)}" '
           f'data-profile="{_e(r.profile)}">'
           f'<td><span class="label label-{STATUS_LABEL.get(r.status, "default")}">'
           f'{_e(r.status)}</span></td><td>{_commit(r.commit)}</td><td>{_e(r.branch)}</td>'
           f'<td>{_e(r.profile)}</td><td>{_e(r.kind)}</td><td class="nowrap">{_e(when)}</td>'
           f'<td class="nowrap">{_e(took)}</td><td class="error">{_e(r.error)}</td></tr>')
    if r.log_tail and (r.status == "failed" or r.error):
        row += (f'<tr class="log-row" data-commit="{_e(r.commit.hash)}"><td></td>'
                f'<td colspan="7"><details><summary>log of {_e(r.commit.short)} (last '
                f'{len(r.log_tail)} characters)</summary><pre class="log">{_e(r.log_tail)}'
                '</pre></details></td></tr>')
    return row


def _runs_table(runs: Sequence[RunView], css: str) -> str:
    head = ("<tr><th>status</th><th>commit</th><th>branch</th><th>profile</th><th>kind</th>"
            "<th>when</th><th>took</th><th>error</th></tr>")
    body = "".join(_run_row(r) for r in runs)
    return (f'<table class="table table-condensed {css}"><thead>{head}</thead>'
            f'<tbody>{body}</tbody></table>')


def _summary(s: SummaryView) -> str:
    lines = "".join(f"<li>{_e(line.lstrip('• '))}</li>" for line in s.lines)
    return (f'<div class="panel panel-default summary" data-kind="{_e(s.kind)}">'
            f'<div class="panel-heading">latest {_e(s.kind)} summary, {_e(_when(s.created_at))}'
            f'</div><div class="panel-body"><p>{_e(s.text)}</p><ul>{lines}</ul></div></div>')


def render(page: AlertsPage) -> str:
    """The whole HTML document (pure: same data, same page)."""
    open_ = [a for a in page.alerts if a.status == "open"]
    closed = [a for a in page.alerts if a.status != "open"]
    active = page.running + page.queued
    more = page.queued_total - len(page.queued)
    parts = [
        f'<h1>Alerts and runs</h1><p class="text-muted">Written by the benchmark service '
        f'after every measurement; this copy: {_e(_when(page.generated_at))}. '
        f'{len(open_)} open alert(s), {len(page.running)} running, {page.queued_total} '
        'queued.</p>',
        f'<h2 id="open">Open alerts ({len(open_)})</h2>',
        "".join(_alert(a) for a in open_) or '<p class="none">No open alerts.</p>',
        '<h2 id="runs">Runs</h2>',
        _runs_table(active, "active-runs") if active else
        '<p class="none">Nothing is running or queued.</p>',
        f'<p class="text-muted">and {more} more queued</p>' if more > 0 else "",
        f'<h3>Last {len(page.finished)} finished</h3>' if page.finished else "",
        _runs_table(page.finished, "finished-runs") if page.finished else
        '<p class="none">No run has finished yet.</p>',
        '<h2 id="nightly">Nightly summary</h2>',
        "".join(_summary(s) for s in page.summaries) or
        '<p class="none">No nightly run has finished yet.</p>',
        f'<h2 id="closed">Closed alerts ({len(closed)})</h2>',
        "".join(_alert(a) for a in closed) or '<p class="none">No closed alerts.</p>',
    ]
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\">"
            "<title>Alerts and runs</title>"
            '<link rel="icon" href="data:,">'
            f'<link rel="stylesheet" href="{_e(BOOTSTRAP_CSS)}">'
            "<style>body{padding-top:60px}pre.log{max-height:24em;overflow:auto;"
            "font-size:11px}.alert-item .dl-horizontal dt{width:100px}"
            ".alert-item .dl-horizontal dd{margin-left:115px}"
            ".alert-item code{white-space:normal;word-break:break-all}"
            "td.nowrap{white-space:nowrap}td.error{word-break:break-word}"
            "tr.log-row td{border-top:none!important}</style></head>\n<body>"
            + _nav(page.pages, PAGE) + '<div class="container-fluid">' + "\n".join(parts)
            + "</div></body></html>\n")


def write(html_dir: Path, page: AlertsPage, plots_dir: Path) -> Path:
    """Write ``alerts.html`` and the alerts' plots into the published directory, and link
    the service's pages from asv's navigation."""
    html_dir.mkdir(parents=True, exist_ok=True)
    if not (html_dir / BOOTSTRAP_CSS).is_file():  # before asv's first publish
        install_vendor(html_dir)
    if any(a.plot for a in page.alerts):
        # the daemon serves _plots/ from the state directory; the copy keeps the published
        # directory whole for any other web server
        dest = html_dir / "_plots"
        dest.mkdir(exist_ok=True)
        for a in page.alerts:
            src, copy = plots_dir / a.plot, dest / a.plot
            if a.plot and (not copy.is_file()
                           or copy.stat().st_mtime < src.stat().st_mtime):
                shutil.copy2(src, copy)
    path = html_dir / PAGE
    tmp = path.with_name(PAGE + ".tmp")
    tmp.write_text(render(page), encoding="utf-8")
    tmp.replace(path)
    add_nav(html_dir, page.pages)
    return path
