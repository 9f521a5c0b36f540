"""The published site in headless Chromium with every host but 127.0.0.1 unreachable.

A throwaway repository of the tiny project gets a planted slowdown (its subject carries
``<script>`` and quotes) and, later, a queued commit; the real service measures it
(``once``), alerts, publishes; ``python -m scheduler publish`` publishes again with the
queued run. Then, served by the daemon's own site server: the summary grid renders, the
graph link of the real alert (clicked on the alerts page) opens that benchmark's graph
with the alert's commits marked in flot's state, the regressions page lists asv's
detected step, the alerts page shows the alerts and runs with everything from commits
escaped (a failed run's log: test_alerts_page.py), and no page loads anything from
another host or fails to load anything. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from offline_browser import CHROMIUM, offline_browser, screenshot
from sched_helpers import TinyRepo, alerts_file, once, run_cli, write_config

from scheduler.publish.site import SiteServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="Debian chromium not installed (apt-get install chromium)"),
]

BENCH = "bench_tiny.Suite.track_latency"
SUBJECT = """slower <script>window.__xss = 1</script> "double" 'single' & <b>bold</b>"""
LIMITS = '''
[[limit]]
benchmark = 'track_latency'
max = 0.015
note = "plan: latency < 15 ms"
'''


@dataclass
class Site:
    url: str
    good: str  # last good commit
    bad: str  # the planted slowdown
    queued: str  # queued, not measured
    console_link: str  # the link the console alert carried


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("site")
    r = TinyRepo(tmp / "proj")
    good = r.commit(0.010, "good")
    bad = r.commit(0.020, SUBJECT)
    # confirmation off: one measurement per commit keeps the test short; what is
    # checked here is the page, not the judging
    cfg = write_config(tmp, shared, r, limits=LIMITS, initial_commits=5,
                       extra="\n[judge]\nconfirm = false\n")
    once(cfg)
    queued = r.commit(0.020, "queued, not measured yet")
    assert run_cli("--config", str(cfg), "backfill", f"{queued}^!").returncode == 0
    pub = run_cli("--config", str(cfg), "publish")
    assert pub.returncode == 0, pub.stdout + pub.stderr
    link = next(str(a["link"]) for a in alerts_file(tmp / "state")
                if a.get("kind") == "regression" and "Performance regression" in str(a["text"]))
    server = SiteServer(tmp / "html", "127.0.0.1", 0, plots_dir=tmp / "state" / "plots").start()
    try:
        yield Site(f"http://127.0.0.1:{server.port}/", good, bad, queued, link)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Callable[[], Any]]:
    with offline_browser() as new_page:
        yield new_page


@pytest.fixture
def page(browser: Callable[[], Any]) -> Any:
    return browser()


def _flot_highlights(page: Any) -> dict[str, Any]:
    """From the page: the graph's title, its number of points and the commits flot marks
    in red (asv draws the ``commits=`` range as '#d00' lines)."""
    return page.evaluate("""() => {
        const plot = $('#main-graph').data('plot');
        const marks = plot.getOptions().grid.markings
            .filter(m => m.color === '#d00').map(m => m.xaxis.from);
        const hashes = marks.map(x => $.asv.main_json.revision_to_hash[x]);
        const band = plot.getOptions().grid.markings
            .filter(m => String(m.color).startsWith('rgba(200, 0, 0'));
        return {title: $('#title').text().trim(), hashes: hashes, bands: band.length,
                points: plot.getData().reduce((n, s) => n + s.data.length, 0)};
    }""")


def test_summary_grid_and_alert_graph_link(site: Site, page: Any) -> None:
    watch = page.watch
    page.goto(site.url + "index.html")
    page.wait_for_selector(".benchmark-container", timeout=20_000)
    names = page.locator(".benchmark-container").all_inner_texts()
    assert any("Suite.track_latency" in n for n in names), names
    assert page.locator("#nav-li-page-alerts a").get_attribute("href") == "alerts.html"
    page.wait_for_timeout(300)  # the grid's thumbnails
    screenshot(page, "site-summary.png")
    watch.assert_clean("summary grid")

    page.click("#nav-li-page-alerts a")
    page.wait_for_selector(".alert-item")
    alert = page.locator('.alert-item[data-kind="history"][data-status="open"]')
    assert alert.count() == 1
    assert alert.get_attribute("data-bad") == site.bad
    assert alert.get_attribute("data-good") == site.good
    href = alert.locator("a.graph-link").get_attribute("href")
    # the alerts page links where the alert itself (console / Slack) pointed
    assert href.split("#", 1)[1] == site.console_link.split("#", 1)[1]
    alert.locator("a.graph-link").click()
    page.wait_for_function("() => window.$ && $('#main-graph').data('plot') !== undefined",
                           timeout=20_000)
    state = _flot_highlights(page)
    assert state["title"] == BENCH
    assert sorted(state["hashes"]) == sorted([site.good, site.bad]), state
    assert state["bands"] == 1 and state["points"] == 2, state
    assert urllib.parse.urlsplit(page.url).path == "/index.html"
    screenshot(page, "site-alert-graph.png")
    watch.assert_clean("alert's graph")


def test_regressions_page_lists_asv_steps(site: Site, page: Any) -> None:
    watch = page.watch
    page.goto(site.url + "index.html#/regressions")
    row = page.locator("#regressions-body table.table tbody tr").filter(has_text=BENCH)
    row.first.wait_for(timeout=20_000)
    cells = row.first.locator("td").all_inner_texts()
    # asv names the commit of the step (one commit after the last good one) and its factor
    assert cells[2] == site.bad[:8], cells
    assert 1.9 < float(cells[3].rstrip("x")) < 2.1, cells
    # stupidtable sorted the table by factor on load (its aftertablesort event marks it)
    assert page.locator("#regressions-body thead th.desc").count() >= 1
    screenshot(page, "site-regressions.png")
    watch.assert_clean("regressions page")


def test_alerts_page_shows_alerts_runs_and_escapes_commits(site: Site, page: Any) -> None:
    watch = page.watch
    page.goto(site.url + "alerts.html")
    page.wait_for_selector(".alert-item")
    assert page.evaluate("() => window.__xss") is None
    assert page.locator("b", has_text="bold").count() == 0  # not markup
    history = page.locator('.alert-item[data-kind="history"]')
    facts = history.inner_text()
    assert SUBJECT in facts  # shown as text, quotes and all
    assert f"{site.good[:8]}..{site.bad[:8]}" in facts
    assert "Ada Author" in facts
    assert re.search(r"change\s+10 ms → 20 ms \(\+99\.\d%\)", facts), facts
    assert "Mann-Whitney" in facts
    limit = page.locator('.alert-item[data-kind="limit"]')
    assert "20 ms > limit 15 ms (+33.3%)" in limit.inner_text()
    assert "crossed\nlimit 0.015 (plan: latency < 15 ms)" in limit.inner_text()
    plots = page.locator(".alert-item img.plot")
    assert plots.count() == 2
    assert page.evaluate("() => [...document.images].every(i => i.complete && "
                         "i.naturalWidth > 100)")
    runs = {page.locator("tr.run").nth(i).get_attribute("data-commit"):
            page.locator("tr.run").nth(i).get_attribute("data-status")
            for i in range(page.locator("tr.run").count())}
    assert runs[site.queued] == "queued"
    assert runs[site.bad] == "done" and runs[site.good] == "done"
    assert page.locator("#nightly + p.none").count() == 1
    screenshot(page, "site-alerts.png", full_page=True)
    watch.assert_clean("alerts page")
    raw = json.dumps(page.content())
    assert "<script>window.__xss" not in raw
