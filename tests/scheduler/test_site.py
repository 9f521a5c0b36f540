"""The site server and links into the asv site."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from scheduler.publish.site import SiteServer, ensure_placeholder, graph_link


def test_serves_html_and_plots_but_nothing_else(tmp_path: Path) -> None:
    html, plots = tmp_path / "html", tmp_path / "plots"
    plots.mkdir()
    (plots / "a.png").write_bytes(b"png")
    (tmp_path / "secret.txt").write_text("no")
    ensure_placeholder(html)
    site = SiteServer(html, "127.0.0.1", 0, plots_dir=plots).start()
    try:
        base = f"http://127.0.0.1:{site.port}"
        with urllib.request.urlopen(f"{base}/index.html", timeout=5) as resp:
            assert b"No results published yet" in resp.read()
        with urllib.request.urlopen(f"{base}/_plots/a.png", timeout=5) as resp:
            assert resp.read() == b"png"
        for bad in ("/_plots/../secret.txt", "/../secret.txt", "/_plots/%2e%2e/secret.txt"):
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(base + bad, timeout=5)
    finally:
        site.stop()


def test_port_in_use_is_an_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(OSError):
            SiteServer(tmp_path, "127.0.0.1", s.getsockname()[1])


def test_graph_link_opens_the_benchmark_with_commits_highlighted() -> None:
    link = graph_link("http://bench.example/", "load.Suite.track_p95",
                      (("clients", "10"), ("tool", "'echo'")), "box-quick",
                      ("a" * 40, "b" * 40))
    assert link == ("http://bench.example/index.html#load.Suite.track_p95?machine=box-quick"
                    "&p-clients=10&p-tool=%27echo%27&commits=aaaaaaaa-bbbbbbbb")
    assert graph_link("http://x/", "b", (), "m", ("", "c" * 40)).endswith("&commits=cccccccc")
