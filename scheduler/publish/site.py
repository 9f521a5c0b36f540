"""Serve the published asv site (``html/``) over HTTP from a daemon thread, and build links
into it.

Why stdlib ThreadingHTTPServer: the site is static files; a thread in the daemon keeps
"browse the history" available without another process to supervise. The directory is
re-read on every request, so each ``asv publish`` is visible immediately.
"""

from __future__ import annotations

import functools
import html
import threading
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class SiteError(Exception):
    """The site cannot be served (port in use, no permission)."""


class _QuietHandler(SimpleHTTPRequestHandler):
    plots_dir: str = ""

    def translate_path(self, path: str) -> str:
        # alert plots live in the state directory (asv publish wipes html/), served here
        clean = urllib.parse.unquote(path.split("?", 1)[0].split("#", 1)[0])
        if self.plots_dir and clean.startswith("/_plots/"):
            name = clean[len("/_plots/"):]
            if name and "/" not in name and not name.startswith("."):
                return str(Path(self.plots_dir) / name)
        return super().translate_path(path)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def end_headers(self) -> None:
        # the site changes after every publish; do not let browsers keep stale JSON
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()


# The service's own pages, published next to asv's and linked from asv's navigation bar
# (href, title). A new page: write it into html/ after every publish (asv publish
# replaces the directory) and add it here.
PAGES: tuple[tuple[str, str], ...] = (("alerts.html", "Alerts"),
                                      ("capacity.html", "Capacity"))

PLACEHOLDER = """<!doctype html><html><head><meta charset="utf-8">
<meta http-equiv="refresh" content="30"><title>Benchmarks</title></head>
<body><h1>No results published yet</h1>
<p>The scheduler is measuring the first commits; this page reloads every 30 seconds and
becomes the asv history site after the first run.</p>
{links}</body></html>
"""


def ensure_placeholder(html_dir: Path) -> None:
    """Before the first ``asv publish`` there is no site: serve a page that says so
    instead of a 404 (publish replaces the whole directory)."""
    html_dir.mkdir(parents=True, exist_ok=True)
    index = html_dir / "index.html"
    if not index.exists():
        links = "".join(f'<p><a href="{html.escape(href)}">{html.escape(title)}</a></p>\n'
                        for href, title in PAGES)
        index.write_text(PLACEHOLDER.format(links=links), encoding="utf-8")


class SiteServer:
    """``html_dir`` on ``host:port`` (port 0 picks a free port) in a daemon thread."""

    def __init__(self, html_dir: Path, host: str, port: int,
                 plots_dir: Path | None = None) -> None:
        html_dir.mkdir(parents=True, exist_ok=True)
        handler_cls = type("SiteHandler", (_QuietHandler,),
                           {"plots_dir": str(plots_dir) if plots_dir else ""})
        handler = functools.partial(handler_cls, directory=str(html_dir))
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="site",
                                        daemon=True)

    def start(self) -> SiteServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def graph_link(base_url: str, benchmark: str, params: tuple[tuple[str, str], ...],
               machine: str, commits: tuple[str, str] | None) -> str:
    """``index.html#<benchmark>?machine=<m>&p-<param>=<repr>&commits=<a>-<b>``: opens the
    benchmark's graph for this machine with the commit range highlighted."""
    query: list[tuple[str, str]] = [("machine", machine)]
    query += [(f"p-{k}", v) for k, v in params]
    text = urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    if commits:
        a, b = commits
        text += f"&commits={a[:8]}-{b[:8]}" if a else f"&commits={b[:8]}"
    return f"{base_url.rstrip('/')}/index.html#{benchmark}?{text}"
