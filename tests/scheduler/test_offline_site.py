"""The offline rewrite of asv's published page, on the page of the installed asv.

This is the test that fails when asv is upgraded to a version whose page loads other
files: the rewrite then names what has no local copy instead of publishing a site that
is blank without internet.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import asv
import pytest

from scheduler.cli import main
from scheduler.publish.offline_site import (
    MARKER,
    PUBLISHED_VENDOR,
    VENDOR_DIR,
    OfflineSiteError,
    add_nav,
    external_loads,
    load_manifest,
    make_offline,
)

ASV_WWW = Path(asv.__file__).parent / "www"


@pytest.fixture
def published(tmp_path: Path) -> Path:
    """asv's page as ``asv publish`` copies it (the template directory, unchanged)."""
    html = tmp_path / "html"
    shutil.copytree(ASV_WWW, html)
    return html


def test_vendored_files_match_the_manifest_and_have_licenses() -> None:
    files = load_manifest()  # raises when a file's sha256 differs
    doc = json.loads((VENDOR_DIR / "manifest.json").read_text())
    listed = {f.file for f in files} | {p["license_file"] for p in doc["packages"].values()}
    on_disk = {str(p.relative_to(VENDOR_DIR)) for p in VENDOR_DIR.rglob("*") if p.is_file()}
    assert on_disk - {"manifest.json", "README.md"} == listed
    assert {f.package for f in files} == set(doc["packages"])
    for p in doc["packages"].values():
        assert (VENDOR_DIR / p["license_file"]).stat().st_size > 0
        assert p["tarball"].startswith("https://registry.npmjs.org/")


def test_installed_asv_page_is_rewritten_to_local_copies(published: Path) -> None:
    page = (published / "index.html").read_text()
    cdn = external_loads(page)
    assert len(cdn) == 10  # asv 0.6.6: jQuery, 4 flot files, orderBars, stupidtable, md5,
    #                        Bootstrap JS and CSS
    replaced = make_offline(published)
    assert sorted(replaced) == sorted(cdn)
    new = (published / "index.html").read_text()
    assert MARKER in new
    assert external_loads(new) == []
    # the local files are there, and the browser checks the ones that equal the CDN's
    by_url = {f.url: f for f in load_manifest() if f.url}
    kept = []
    for v in by_url.values():
        assert (published / v.href).is_file()
        tag = next(line for line in new.splitlines() if v.href in line)
        if "integrity=" in tag:
            kept.append(v.package)
            assert any(s in tag for s in v.sri)
    assert sorted(kept) == ["blueimp-md5", "bootstrap", "bootstrap", "flot-orderbars", "jquery"]
    # asv's own files are untouched, the licenses travel with the copies
    assert (published / "asv.js").read_bytes() == (ASV_WWW / "asv.js").read_bytes()
    assert (published / PUBLISHED_VENDOR / "jquery-3.3.1" / "LICENSE.txt").is_file()
    assert (published / PUBLISHED_VENDOR / "manifest.json").is_file()
    # a second run (the daemon publishes often) changes nothing
    assert make_offline(published) == []
    assert (published / "index.html").read_text() == new


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_a_newer_asv_page_fails_loudly(published: Path) -> None:
    # a version bump of one dependency: unknown URL and missing expected one, both named
    _edit(published / "index.html", "jquery-3.3.1.min.js", "jquery-3.7.1.min.js")
    with pytest.raises(OfflineSiteError) as err:
        make_offline(published)
    msg = str(err.value)
    assert f"asv {asv.__version__}" in msg
    assert "without a local copy: https://code.jquery.com/jquery-3.7.1.min.js" in msg
    assert "no longer loads: https://code.jquery.com/jquery-3.3.1.min.js" in msg
    assert "scheduler/publish/vendor/" in msg
    assert "https://code.jquery.com" in (published / "index.html").read_text()  # untouched


@pytest.mark.parametrize("where,old,new", [
    ("index.html", "</head>",
     '<script src="https://cdn.example.org/new.js"></script></head>'),
    ("index.html", "</head>", '<link rel="preload" href="//fonts.example.org/f.woff2"></head>'),
    ("index.html", "<body>", '<body style="background: url(https://img.example.org/x.png)">'),
    ("index.html", "function js_load_failure() {",
     'function js_load_failure() { fetch("https://api.example.org/x");'),
    ("asv.js", "$(document).ready(function() {",
     '$(document).ready(function() { $.getScript("https://cdn.example.org/x.js");'),
    ("asv.css", "body {", '@import url("https://fonts.example.org/css");\nbody {'),
    ("error.html", "</head>", '<img src="https://img.example.org/swallow.png"></head>'),
])
def test_any_other_external_load_is_an_error(published: Path, where: str, old: str,
                                             new: str) -> None:
    _edit(published / where, old, new)
    with pytest.raises(OfflineSiteError, match=r"example\.org"):
        make_offline(published)


def test_links_are_not_loads(published: Path) -> None:
    # asv's page links to asv's home page and the project's; a click is not a load
    page = (published / "index.html").read_text()
    assert 'href="https://github.com/airspeed-velocity/asv/"' in page
    _edit(published / "index.html", "</head>",
          '<link rel="alternate" href="https://example.org/feed"></head>')
    make_offline(published)


def test_nav_links_the_service_pages_once(published: Path, tmp_path: Path) -> None:
    make_offline(published)
    assert add_nav(published, [("alerts.html", "Alerts"), ("capacity.html", "Capacity")]) == [
        "alerts.html", "capacity.html"]
    assert add_nav(published, [("alerts.html", "Alerts")]) == []
    page = (published / "index.html").read_text()
    assert page.count('href="alerts.html"') == 1
    assert page.index("nav-li-regressions") < page.index("nav-li-page-alerts") < page.index(
        "nav-li-page-capacity") < page.index('id="nav-li-graphdisplay"')
    # no asv page yet (the placeholder): nothing to link from
    empty = tmp_path / "empty"
    empty.mkdir()
    assert add_nav(empty, [("alerts.html", "Alerts")]) == []
    _edit(published / "index.html", '<li id="nav-li-graphdisplay">', "<li>")
    with pytest.raises(OfflineSiteError, match="navigation changed"):
        add_nav(published, [("other.html", "Other")])


def test_site_command(published: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (published / "alerts.html").write_text("<!doctype html><title>alerts</title>")

    def site(path: Path) -> tuple[int, str, str]:
        code = main(["site", str(path)])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _err = site(published)
    assert code == 0
    assert "10 CDN file(s) now served from" in out and "linked alerts.html" in out
    assert "already served from local copies" in site(published)[1]
    _edit(published / "index.html", "_vendor/jquery-3.3.1/jquery.min.js",
          "https://code.jquery.com/jquery-3.7.1.min.js")
    code, _out, err = site(published)
    assert code == 2 and "jquery-3.7.1" in err
    code, _out, err = site(published / "nowhere")
    assert code == 2 and "publish the site with asv first" in err
