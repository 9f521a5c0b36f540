"""The alerts page: its data read from a real state database, the HTML (a pure function of
that data) with everything from commits escaped, and the files written next to asv's."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import asv
import pytest

from scheduler.measure.gitrepo import Commit
from scheduler.policy.compare import Finding
from scheduler.publish import alerts_page, messages
from scheduler.publish.offline_site import make_offline
from scheduler.publish.plot import plot_name
from scheduler.publish.site import graph_link
from scheduler.store.state import State

NASTY = """<script>alert("x")</script> 'single' "double" & <img src=x onerror=alert(1)>"""
A, B, C, D, E = "a" * 40, "b" * 40, "c" * 40, "d" * 40, "e" * 40


def _alert(state: State, f: Finding, *, legacy: bool = False) -> None:
    """What Pipeline._alert records: the alert row and the message in the outbox."""
    state.open_alert(f.key, f.kind, f.machine, f.bench, good=f.good, bad=f.bad,
                     before=f.before, after=f.after,
                     detail={"benchmark": f.benchmark, "params": f.params, "unit": f.unit})
    bad = Commit(f.bad, "Eve <eve@example.com>", 0, NASTY)
    msg = messages.regression(f, good=None, bad=bad, link="http://x/", plot=None,
                              plot_url=None)
    if legacy:  # a message queued before it carried the facts as fields
        for k in ("crossed", "significance", "change"):
            del msg[k]
    state.outbox_put(f"alert|{f.key}|{f.bad}", "regression", msg)


@pytest.fixture
def state(tmp_path: Path) -> State:
    st = State(tmp_path / "state.sqlite3")
    for h, subject in ((A, "good one"), (B, NASTY), (C, "broken <build>"), (D, "queued")):
        st.record_commit(h, "main", "Eve <eve@example.com>", 1_700_000_000, subject)
    for h in (A, B, C):
        st.enqueue(h, "main", "quick", "poll", 1)
        run = st.run_for(h, "quick")
        assert run is not None and st.claim(run.id)
    st.finish(st.run_for(A, "quick").id, "done", log="fine")  # type: ignore[union-attr]
    st.finish(st.run_for(B, "quick").id, "done", log="ok",  # type: ignore[union-attr]
              error="benchmarks failed: x.track_y")
    st.finish(st.run_for(C, "quick").id, "failed",  # type: ignore[union-attr]
              log="x" * 10_000 + "\nTraceback: <error> & 'quote'", error="asv exit 2: <boom>")
    st.enqueue(E, "main", "quick", "poll", 2)
    assert st.claim(st.run_for(E, "quick").id)  # type: ignore[union-attr]
    for i in range(alerts_page.QUEUED_SHOWN + 2):
        st.enqueue(f"{i:040x}", "main", "quick", "poll", i)
    st.enqueue(D, "main", "quick", "poll", 10**9)
    hist = Finding("history", "box-quick", "quick", "lp.track_p95(clients=10)",
                   "lp.track_p95", (("clients", "10"),), "seconds", A, B, 0.010, 0.013,
                   "threshold 5% (noise.toml)",
                   extra={"significance": "p = 0.001 (Mann-Whitney U, 20 vs 20 samples)"})
    _alert(state=st, f=hist)
    lim = Finding("limit", "box-quick", "quick", "lp.track_p99", "lp.track_p99", (),
                  "seconds", "", B, 0.050, 0.060, "limit 0.05 (plan <b>p99</b>)",
                  extra={"limit": "0.05"})
    _alert(st, lim, legacy=True)
    st.close_alert(lim.key)
    st.outbox_put(f"recovery|{lim.key}|{D}", "recovery",
                  {"text": f"Recovered: lp.track_p99 is back under its limit at {D[:8]}"})
    st.outbox_put("summary|nightly|2026-12-01T03:00Z", "summary",
                  {"text": "Nightly full run 2026-12-01T03:00Z: main done; 1 open regression(s)",
                   "details": [f"• `main` `{B[:8]}`: done", "• lp.track_p95 [box-quick]"]})
    return st


def test_collect_reads_what_the_service_said(state: State, tmp_path: Path) -> None:
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / plot_name("history|box-quick|lp.track_p95(clients=10)|" + B)).write_bytes(b"png")
    page = alerts_page.collect(state, plots, now=1_800_000_000)
    by_kind = {a.kind: a for a in page.alerts}
    h, lim = by_kind["history"], by_kind["limit"]
    assert (h.status, h.good and h.good.hash, h.bad.hash) == ("open", A, B)
    assert h.bad.subject == NASTY and h.bad.author == "Eve <eve@example.com>"
    assert h.change == "10 ms → 13 ms (+30.0%)"
    assert h.crossed == "threshold 5% (noise.toml)"
    assert h.significance == "p = 0.001 (Mann-Whitney U, 20 vs 20 samples)"
    assert h.link == graph_link(".", "lp.track_p95", (("clients", "10"),), "box-quick", (A, B))
    assert h.plot.endswith(".png") and lim.plot == ""
    # an older message without the fields: read from its lines
    assert lim.crossed == "limit 0.05 (plan <b>p99</b>)" and lim.change.startswith("60 ms > limit")
    assert lim.status == "closed" and lim.recovery.startswith("Recovered: lp.track_p99")
    assert [(r.commit.hash, r.status) for r in page.finished] == [
        (C, "failed"), (B, "done"), (A, "done")]
    failed = page.finished[0]
    assert failed.log_tail.endswith("& 'quote'")
    assert len(failed.log_tail) == alerts_page.LOG_TAIL_CHARS
    assert page.queued[0].commit.hash == D  # the queue's order: newest first
    assert [r.commit.hash for r in page.running] == [E]
    assert page.queued_total == alerts_page.QUEUED_SHOWN + 3
    assert len(page.queued) == alerts_page.QUEUED_SHOWN
    assert [s.kind for s in page.summaries] == ["nightly"]


def test_render_escapes_everything_from_commits(state: State, tmp_path: Path) -> None:
    text = alerts_page.render(alerts_page.collect(state, tmp_path, now=1_800_000_000))
    assert "<script>" not in text and "<img src=x" not in text and "<b>p99" not in text
    assert html.escape(NASTY, quote=True) in text
    assert "Traceback: &lt;error&gt; &amp; &#x27;quote&#x27;" in text
    assert "asv exit 2: &lt;boom&gt;" in text
    assert "broken &lt;build&gt;" in text
    # every attribute value is quoted and escaped: no tag is opened by the data
    tags = re.findall(r"<([a-zA-Z0-9]+)", text)
    assert set(tags) <= {"html", "head", "meta", "title", "link", "style", "body", "nav", "div",
                         "span", "ul", "li", "a", "h1", "h2", "h3", "p", "strong", "dl", "dt",
                         "dd", "code", "img", "table", "thead", "tbody", "tr", "th", "td",
                         "details", "summary", "pre"}, tags
    assert f'data-commit="{E}" data-status="running"' in text and "since 20" in text
    for section in ("Open alerts (1)", "Closed alerts (1)", "and 3 more queued",
                    "latest nightly summary", "Last 3 finished"):
        assert section in text
    assert 'href="alerts.html"' in text and 'href="index.html#/regressions"' in text
    # pure: the same data gives the same page
    page = alerts_page.collect(state, tmp_path, now=1_800_000_000)
    assert alerts_page.render(page) == alerts_page.render(page)


def test_empty_state(tmp_path: Path) -> None:
    text = alerts_page.render(alerts_page.collect(State(tmp_path / "s.sqlite3"), tmp_path))
    for none in ("No open alerts.", "Nothing is running or queued.", "No run has finished yet.",
                 "No nightly run has finished yet.", "No closed alerts."):
        assert none in text


def test_write_next_to_asv_and_link_it(state: State, tmp_path: Path) -> None:
    plots = tmp_path / "plots"
    plots.mkdir()
    name = plot_name("history|box-quick|lp.track_p95(clients=10)|" + B)
    (plots / name).write_bytes(b"png")
    html_dir = tmp_path / "html"
    # before asv's first publish: the page brings its own stylesheet
    path = alerts_page.write(html_dir, alerts_page.collect(state, plots), plots)
    assert path == html_dir / "alerts.html"
    assert (html_dir / alerts_page.BOOTSTRAP_CSS).is_file()
    assert (html_dir / "_plots" / name).read_bytes() == b"png"
    # after a publish: asv's navigation links it
    shutil.rmtree(html_dir)
    shutil.copytree(Path(asv.__file__).parent / "www", html_dir)
    make_offline(html_dir)
    alerts_page.write(html_dir, alerts_page.collect(state, plots), plots)
    assert '<a href="alerts.html">Alerts</a>' in (html_dir / "index.html").read_text()
    assert (html_dir / "alerts.html").is_file()
