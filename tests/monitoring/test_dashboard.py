"""The live dashboard in headless Chromium while real traffic flows.

Asserts that the figures on the page change from tick to tick and match the JSON API,
and saves ``test-artifacts/monitoring-dashboard.png`` (taken while traffic flows).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from monitoring_client import BackgroundTraffic
from monitoring_server import ARTIFACTS, Server, start_server, stop_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium not installed (apt-get install chromium)"
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """Per-connection cap 16 (the traffic's 24-call bursts get some -32001 rejections) and
    a 15 ms provider, so every panel has something to show."""
    srv = start_server(
        tmp_path,
        "--max-inflight-per-connection",
        "16",
        "--provider-latency-ms",
        "15",
        "--provider-spread-ms",
        "4",
    )
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture
def page(server: Server) -> Iterator[Any]:
    """A Chromium page (1440x1000) with console errors collected on ``page.errors``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1440, "height": 1000})
            errors: list[str] = []
            pg.on("pageerror", lambda exc: errors.append(str(exc)))
            pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            pg.errors = errors  # type: ignore[attr-defined]
            yield pg
        finally:
            browser.close()


def figure(page: Any, name: str) -> float | None:
    """The raw number behind ``[data-metric=name]`` (``None`` while it shows a dash)."""
    raw = page.locator(f'[data-metric="{name}"]').first.get_attribute("data-value")
    return None if raw in (None, "") else float(raw)


def wait_for(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# page figure -> where the same number lives in the /api/metrics document
WINDOWED = {
    "rate_in_1s": ("messages", "rate_in", "1s"),
    "rate_in_10s": ("messages", "rate_in", "10s"),
    "rate_out_1s": ("messages", "rate_out", "1s"),
    "p50_ms": ("latency", "overall", "p50_ms"),
    "p95_ms": ("latency", "overall", "p95_ms"),
    "p99_ms": ("latency", "overall", "p99_ms"),
    "inflight_peak": ("inflight", "peak_1s"),
    "rejections_rate": ("rejections", "rate", "1s"),
    "cpu_percent": ("process", "cpu_percent"),
}
COUNTERS = {
    "messages_in": ("messages", "in"),
    "messages_out": ("messages", "out"),
    "requests_total": ("requests", "total"),
    "rejections": ("rejections", "overload"),
    "connections_opened": ("connections", "opened"),
    "connections": ("connections", "current"),
    "requests_tool_error": ("requests", "by_outcome", "tool_error"),
}


def dig(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def compare_same_tick(page: Any, server: Server) -> int:
    """Read the page and the API at the same metrics tick; windowed figures must be equal."""
    for _ in range(20):
        doc = server.api()
        tick = figure(page, "tick")
        if tick == doc["tick"]:
            shown = {name: figure(page, name) for name in WINDOWED}
            if figure(page, "tick") == tick:  # the page did not move on while we read
                for name, path in WINDOWED.items():
                    assert shown[name] == dig(doc, path), (name, shown[name], dig(doc, path))
                return int(doc["tick"])
        time.sleep(0.15)
    raise AssertionError("could not catch the page and the API on the same tick")


def test_dashboard_updates_live_and_matches_api(server: Server, page: Any) -> None:
    with BackgroundTraffic(server.ws_url, connections=3, stagger_s=3.0) as traffic:
        page.goto(server.http_url + "/monitoring")
        wait_for(lambda: (figure(page, "messages_in") or 0) > 0, 10, "first figures")
        first = {n: figure(page, n) for n in ("tick", "messages_in", "requests_total")}
        wait_for(lambda: (figure(page, "tick") or 0) >= (first["tick"] or 0) + 2, 5, "2 ticks")
        assert figure(page, "messages_in") > first["messages_in"]  # type: ignore[operator]
        assert figure(page, "requests_total") > first["requests_total"]  # type: ignore[operator]
        assert (figure(page, "rate_in_1s") or 0) > 0
        assert (figure(page, "p99_ms") or 0) > 0
        assert page.locator('[data-metric="status"]').first.inner_text() == "live"

        compare_same_tick(page, server)
        # let the charts gather a few seconds of points, then keep the picture
        wait_for(
            lambda: (
                page.evaluate("window.__dashboard.points") >= 14
                and (figure(page, "rejections") or 0) > 0
            ),
            25,
            "14 chart points and some overload rejections",
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "monitoring-dashboard.png"), full_page=True)
        compare_same_tick(page, server)
    tally = traffic.tally

    # traffic stopped: once a tick has passed, counters on the page equal the API and the
    # client's own tally exactly
    settled = server.wait_api(
        lambda d: d["messages"]["in"] == tally.sent and d["connections"]["current"] == 0
    )
    wait_for(lambda: (figure(page, "tick") or 0) > settled["tick"], 5, "a tick after traffic")
    doc = server.api()
    for name, path in COUNTERS.items():
        assert figure(page, name) == dig(doc, path), name
    assert figure(page, "messages_in") == tally.sent
    assert figure(page, "messages_out") == tally.received
    assert figure(page, "rejections") == tally.busy > 0
    assert figure(page, "connections_opened") == 3
    glm = page.locator('tr[data-provider="glm"] td').all_inner_texts()
    assert glm[1] == doc["providers"]["glm"]["breaker"] == "closed"
    assert int(glm[2].replace(",", "")) == doc["providers"]["glm"]["calls"] > 0
    echo = page.locator('tr[data-tool="echo"] td').all_inner_texts()
    assert int(echo[1].replace(",", "")) == tally.by_tool["echo"]["ok"]
    assert int(echo[4].replace(",", "")) == tally.by_tool["echo"]["busy"]
    assert page.errors == []
