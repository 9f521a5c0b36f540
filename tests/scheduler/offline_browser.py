"""Debian's headless Chromium that can reach 127.0.0.1 and nothing else.

Every request to another host is aborted and recorded (route interception), and the host
resolver knows no other name, so a CDN reference left in a page fails the test that
loads it instead of rendering from the internet. Failed loads (aborted, refused, HTTP
status >= 400), page errors and console errors are collected per page.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@dataclass
class Watch:
    """What went wrong while a page was loaded."""

    blocked: list[str] = field(default_factory=list)  # requests to another host
    failed: list[str] = field(default_factory=list)  # failed loads, any host
    errors: list[str] = field(default_factory=list)  # page and console errors

    def clear(self) -> None:
        self.blocked.clear()
        self.failed.clear()
        self.errors.clear()

    def assert_clean(self, what: str) -> None:
        assert not self.blocked, f"{what}: requests left the machine: {self.blocked}"
        assert not self.failed, f"{what}: failed resource loads: {self.failed}"
        assert not self.errors, f"{what}: page errors: {self.errors}"


@contextmanager
def offline_browser() -> Iterator[Callable[[], Any]]:
    """A browser; calling the yielded function opens a fresh page (1400x900) whose
    ``page.watch`` (a Watch) records what went wrong on it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        contexts: list[Any] = []

        def new_page() -> Any:
            watch = Watch()

            def route(r: Any) -> None:
                if urllib.parse.urlsplit(r.request.url).hostname == "127.0.0.1":
                    r.continue_()
                else:
                    watch.blocked.append(r.request.url)
                    r.abort("blockedbyclient")

            def response(resp: Any) -> None:
                if resp.status >= 400:
                    watch.failed.append(f"{resp.status} {resp.url}")

            context = browser.new_context(viewport={"width": 1400, "height": 900})
            contexts.append(context)
            context.route("**/*", route)
            page = context.new_page()
            page.on("requestfailed",
                    lambda req: watch.failed.append(f"{req.failure} {req.url}"))
            page.on("response", response)
            page.on("pageerror", lambda exc: watch.errors.append(str(exc)))
            page.on("console", lambda msg: watch.errors.append(msg.text)
                    if msg.type == "error" else None)
            page.watch = watch  # type: ignore[attr-defined]
            return page

        try:
            yield new_page
        finally:
            for c in contexts:
                c.close()
            browser.close()


def screenshot(page: Any, name: str, *, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=full_page)
    print(f"screenshot: {path}")
    return path
