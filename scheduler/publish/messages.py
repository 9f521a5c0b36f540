"""Alert texts and Slack Block Kit layouts (regression, recovery, failure, nightly summary).

Why built once, at queue time: the outbox stores the finished message, so a retry after a
restart sends exactly what would have been sent, and the console backend prints the same
content. Slack limits (50 blocks, 3000 characters per section) are respected here.

Everything in the blocks that comes from a commit (subject, author), a log or an error is
escaped for Slack's mrkdwn (``scheduler.publish.mrkdwn.escape``): a subject ``<!channel>`` or ``<http://evil|ok>``
must show as typed, not page the channel or hide a link. ``text`` and ``details`` stay
plain text (the console prints them); the Slack backends escape ``text`` when they send it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..measure.gitrepo import Commit
from ..policy.compare import Finding
from ..results import ResultFile, format_value
from ..store.baselines import Baselines
from .mrkdwn import escape, mrkdwn_link

SECTION_MAX = 2900


def _cut(text: str, n: int = SECTION_MAX) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text)}}


def _commit_text(c: Commit | None, fallback: str) -> str:
    """mrkdwn: hash, subject, author (the last two escaped: anyone can write them)."""
    if c is None:
        return f"`{escape(fallback[:8])}`" if fallback else "—"
    return f"`{c.short}` {escape(c.subject[:80])} — {escape(c.author)}"


def regression(f: Finding, *, good: Commit | None, bad: Commit | None, link: str,
               plot: str | None, plot_url: str | None) -> dict[str, Any]:
    """A regression / limit / baseline alert."""
    title = {"history": "Performance regression", "baseline": "Slower than blessed baseline",
             "limit": "Limit breached",
             "side_by_side": "Performance regression (side by side with the parent)"}[f.kind]
    before = format_value(f.before, f.unit)
    after = format_value(f.after, f.unit)
    pct = ""
    if f.before:
        pct = f" ({(f.after / f.before - 1) * 100:+.1f}%)"
    if "significance" in f.extra:
        sig = f.extra["significance"]
    elif f.comparison:
        sig = f.comparison.significance_text()
        if f.asv_step:
            sig += "; asv step detection agrees"
    else:
        sig = "asv step detection" if f.asv_step else "absolute limit"
    rng = (f"{good.short if good else f.good[:8]}..{bad.short if bad else f.bad[:8]}"
           if f.good else (bad.short if bad else f.bad[:8]))
    at = bad.short if bad else f.bad[:8]
    if f.kind == "limit":  # "before" is the limit itself
        change = f"{after} > limit {before}{pct}"
        change_md = f"*{after}* > limit {before}{pct}"
    else:
        change = f"{before} → {after}{pct}"
        change_md = f"*{before} → {after}*{pct}"
    text = f"{title}: {f.bench} [{f.machine}] {change} at {at}"
    details = [
        f"benchmark: {f.bench}  (machine {f.machine}, profile {f.profile})",
        f"{'value' if f.kind == 'limit' else 'before → after'}: {change}",
        f"significance: {sig}",
        f"commits: {rng}" + (f"  first bad: {bad.short} by {bad.author}" if bad else ""),
        f"crossed: {f.crossed}",
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(title, 150)}},
        _section(f"*{mrkdwn_link(link, f.bench)}*  on `{escape(f.machine)}`\n"
                 f"{escape(change_md)}\n{escape(sig)}"),
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*First bad*\n{_commit_text(bad, f.bad)}"},
            {"type": "mrkdwn", "text": f"*Last good*\n{_commit_text(good, f.good)}"
             if f.good else "*Last good*\n—"},
            {"type": "mrkdwn", "text": f"*Range*\n`{escape(rng)}`"},
            {"type": "mrkdwn", "text": f"*Crossed*\n{escape(_cut(f.crossed, 1900))}"},
        ]},
        {"type": "context", "elements": [
            {"type": "mrkdwn",
             "text": mrkdwn_link(link, "Open the graph with the commits highlighted")}]},
    ]
    return {"kind": "regression", "text": text, "details": details, "blocks": blocks,
            "link": link, "plot": plot, "plot_url": plot_url,
            "plot_title": f"{f.bench} history",
            # the same facts as fields, for the site's alerts page
            "change": change, "significance": sig, "crossed": f.crossed}


def recovery(bench: str, machine: str, kind: str, value: float, unit: str,
             before: float | None, commit: Commit | None, commit_hash: str,
             link: str) -> dict[str, Any]:
    what = {"limit": "back under its limit", "baseline": "back within its blessed baseline",
            "history": "recovered"}.get(kind, "recovered")
    ref = f" (reference {format_value(before, unit)})" if before is not None else ""
    text = (f"Recovered: {bench} [{machine}] is {what} at "
            f"{commit.short if commit else commit_hash[:8]}: {format_value(value, unit)}{ref}")
    return {"kind": "recovery", "text": text, "details": [], "link": link,
            "blocks": [_section(f":white_check_mark: *{mrkdwn_link(link, bench)}* on "
                                f"`{escape(machine)}` is {what}: "
                                f"{escape(format_value(value, unit) + ref)} at "
                                f"{_commit_text(commit, commit_hash)}")]}


def failure(commit: Commit | None, commit_hash: str, profile: str, error: str, log_tail: str,
            *, partial: bool, what: str = "") -> dict[str, Any]:
    what = what or ("Some benchmarks errored" if partial else "Build or benchmark run failed")
    text = f"{what} for {commit.short if commit else commit_hash[:8]} ({profile}): {error}"
    tail = log_tail[-1800:]
    return {"kind": "failure", "text": text, "details": tail.splitlines()[-15:],
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": what}},
                _section(f"{_commit_text(commit, commit_hash)}\nprofile `{escape(profile)}`: "
                         f"{escape(_cut(error, 800))}"),
                # cut before escaping: an entity is never cut in half
                _section(f"```{escape(tail)}```" if tail.strip() else "(no log)"),
            ]}


def setup_error(error: str) -> dict[str, Any]:
    """asv itself cannot run (configuration, tooling): nothing is measured until fixed."""
    text = f"Benchmark scheduler cannot run asv: {error.splitlines()[0][:300]}"
    return {"kind": "failure", "text": text, "details": error.splitlines()[-15:],
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "asv cannot run"}},
                _section(f"```{escape(_cut(error, 2500))}```"),
                _section("Queued commits wait until this is fixed; nothing is lost."),
            ]}


BREACHED = "breached"
MET = "met"
NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class LimitVerdict:
    """One limit of ``limits.toml`` against one measured series of a nightly head."""

    series: str
    verdict: str  # met | breached | not measured
    value: float | None
    unit: str
    limit: float
    note: str

    def line(self) -> str:
        mark = {BREACHED: "✗", MET: "✓"}.get(self.verdict, "?")
        lim = format_value(self.limit, self.unit)
        if self.verdict == NOT_MEASURED:
            what = f"no value (limit {lim})"
        else:
            op = ">" if self.verdict == BREACHED else "≤"
            what = f"{format_value(self.value, self.unit)} {op} {lim}"
        return f"{mark} {self.verdict}: {self.series}: {what}" + (
            f" — {self.note}" if self.note else "")


def limit_verdicts(result: ResultFile | None, baselines: Baselines, machine: str,
                   profile: str) -> list[LimitVerdict]:
    """Every limit in scope for (machine, profile) against ``result``: breached first,
    then not measured, then met. A limit no series of the result matches is listed as
    not measured with its pattern (a renamed or removed benchmark must not vanish from
    the summary silently); one shadowed by a more specific limit is not listed."""
    out: list[LimitVerdict] = []
    matched: set[int] = set()
    for m in result.measurements if result else ():
        lim = baselines.limit_for(m.id, machine, profile)
        if lim is None:
            continue
        matched.add(id(lim))
        if not m.ok or m.value is None:
            verdict = NOT_MEASURED
        else:
            verdict = BREACHED if m.value > lim.max else MET
        out.append(LimitVerdict(m.id, verdict, m.value, m.unit, lim.max, lim.note))
    for lim in baselines.limits:
        if id(lim) in matched or lim.machine not in ("", machine) \
                or lim.profile not in ("", profile):
            continue
        if result and any(lim.matches(m.id, machine, profile) for m in result.measurements):
            continue  # shadowed by a more specific limit for every series it matches
        out.append(LimitVerdict(f"/{lim.pattern}/", NOT_MEASURED, None, "", lim.max,
                                lim.note))
    order = {BREACHED: 0, NOT_MEASURED: 1, MET: 2}
    return sorted(out, key=lambda v: (order.get(v.verdict, 3), v.series))


def _sections(title: str, lines: list[str]) -> list[dict[str, Any]]:
    """Lines packed into as few sections as Slack's 3000 characters allow."""
    out: list[dict[str, Any]] = []
    chunk = title
    for ln in lines:
        if len(chunk) + len(ln) + 1 > SECTION_MAX:
            out.append(_section(chunk))
            chunk = ""
        chunk = f"{chunk}\n{ln}" if chunk else ln
    out.append(_section(chunk))
    return out


def summary(batch: str, profile: str, rows: list[tuple[str, str, str]],
            open_alerts: list[dict[str, Any]], site_url: str, *,
            limits: dict[str, list[LimitVerdict]] | None = None,
            notes: list[str] | None = None) -> dict[str, Any]:
    """Nightly run summary: each branch head's status, every limit breached or met (per
    branch head, ``limits``), notes (the soak's leak verdicts, a busy machine) and open
    regressions."""
    lines = [f"• `{branch}` `{commit[:8]}`: {status}" for branch, commit, status in rows]
    alerts = [f"• {a['benchmark']} [{a['series']}] ({a['kind']}) since "
              f"`{a['bad_commit'][:8]}`" for a in open_alerts[:20]]
    counts = []
    limit_lines: list[str] = []  # mrkdwn, for the blocks
    limit_plain: list[str] = []  # as typed, for the details (console, alerts.jsonl)
    for branch, verdicts in (limits or {}).items():
        n = {k: sum(1 for v in verdicts if v.verdict == k)
             for k in (BREACHED, NOT_MEASURED, MET)}
        counts.append(f"{branch}: {n[BREACHED]} breached, {n[MET]} met"
                      + (f", {n[NOT_MEASURED]} not measured" if n[NOT_MEASURED] else ""))
        limit_lines.append(f"*{escape(branch)}* — limits: {counts[-1].split(': ', 1)[1]}")
        limit_lines += [escape(v.line()) for v in verdicts]
        limit_plain.append(f"{branch} — limits: {counts[-1].split(': ', 1)[1]}")
        limit_plain += [v.line() for v in verdicts]
    text = (f"Nightly {profile} run {batch}: " + ", ".join(
        f"{b} {s}" for b, _c, s in rows) + (f"; limits {'; '.join(counts)}" if counts else "")
        + f"; {len(open_alerts)} open regression(s)")
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": f"Nightly {profile} run"}},
        _section(escape("\n".join(lines)) or "nothing ran"),
    ]
    if limit_lines:
        blocks += _sections("*Limits*", limit_lines)
    if notes:
        blocks += _sections("*Notes*", [f"• {escape(n)}" for n in notes])
    blocks += [
        _section("*Open regressions*\n" + (escape("\n".join(alerts)) if alerts else "none")),
        {"type": "context", "elements": [
            {"type": "mrkdwn",
             "text": f"{mrkdwn_link(site_url, 'History')} · batch {escape(batch)}"}]},
    ]
    return {"kind": "summary", "text": text,
            "details": lines + limit_plain + [f"note: {n}" for n in notes or []] + alerts,
            "blocks": blocks[:50], "link": site_url}
