"""Make a site published by ``asv publish`` work without internet, and link the service's
own pages from asv's navigation.

Why: asv 0.6's ``index.html`` loads jQuery, flot, stupidtable, blueimp-md5 and Bootstrap
from three CDNs; on a benchmark host without internet the site is blank ("Can not
determine continental origin of swallow"). asv stays unchanged: after each publish the
files listed in ``scheduler/publish/vendor/manifest.json`` are copied into ``<html>/_vendor/`` and
the page's references are pointed at them.

The rewrite knows the exact URLs it replaces. A newer asv whose page loads anything else,
or no longer loads one of them, is an error naming the URLs (never a silently blank
site): update ``scheduler/publish/vendor/`` (its README says how).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

VENDOR_DIR = Path(__file__).resolve().parent / "vendor"
PUBLISHED_VENDOR = "_vendor"  # inside the published html directory
MARKER = ("<!-- offline: CDN files replaced by local copies in _vendor/ "
          "(_vendor/manifest.json; scheduler/publish/offline_site.py) -->")

# Attributes through which a page makes the browser fetch something (an <a href> does not).
_LOAD_ATTRS = {"script": ("src",), "img": ("src", "srcset"), "iframe": ("src",),
               "source": ("src", "srcset"), "audio": ("src",), "video": ("src", "poster"),
               "track": ("src",), "embed": ("src",), "object": ("data",), "input": ("src",),
               "link": ("href",)}
# <link rel=...> values that name a document rather than load one
_LINK_NOT_LOADED = {"alternate", "canonical", "author", "license", "help", "search", "next",
                    "prev", "bookmark"}
_URL_IN_TEXT = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s"'<>)]*""")
_URL_IN_CODE = re.compile(r"""https?://[^\s"'<>)]+""")


class OfflineSiteError(Exception):
    """The published page is not the one the vendored files were chosen for."""


@dataclass(frozen=True)
class VendoredFile:
    """One file of ``manifest.json``: what asv's page loaded (``url``) and our copy."""

    url: str | None  # None: not on the page itself (fonts loaded by bootstrap.min.css)
    file: str  # path under scheduler/publish/vendor/ and under <html>/_vendor/
    package: str
    version: str
    sha256: str
    sri: frozenset[str]  # sha256-/sha384-/sha512- integrity strings of the bytes

    @property
    def href(self) -> str:
        return f"{PUBLISHED_VENDOR}/{self.file}"


def load_manifest(vendor_dir: Path = VENDOR_DIR) -> list[VendoredFile]:
    """The vendored files, each checked against its recorded sha256."""
    doc = json.loads((vendor_dir / "manifest.json").read_text(encoding="utf-8"))
    out = []
    for entry in doc["files"]:
        data = (vendor_dir / entry["file"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise OfflineSiteError(f"{vendor_dir / entry['file']}: sha256 differs from "
                                   "manifest.json (the vendored file was changed)")
        sri = frozenset(f"{alg}-{base64.b64encode(hashlib.new(alg, data).digest()).decode()}"
                        for alg in ("sha256", "sha384", "sha512"))
        out.append(VendoredFile(entry["url"], entry["file"], entry["package"],
                                doc["packages"][entry["package"]]["version"],
                                entry["sha256"], sri))
    return out


@dataclass(frozen=True)
class _Tag:
    name: str
    attrs: dict[str, str]
    raw: str
    start: int  # offset of the tag in the page's text


class _Loads(HTMLParser):
    """Start tags that make the browser fetch a URL, plus URLs inside <script>/<style>."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.tags: list[tuple[_Tag, str, str]] = []  # (tag, attribute, url)
        self.inline: list[str] = []  # URLs in inline scripts, styles and style attributes
        self._in: str = ""
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        line, col = self.getpos()
        raw = self.get_starttag_text() or ""
        values = {k: v or "" for k, v in attrs}
        t = _Tag(tag, values, raw, self._line_starts[line - 1] + col)
        names = _LOAD_ATTRS.get(tag, ())
        if tag == "link" and set(values.get("rel", "").lower().split()) & _LINK_NOT_LOADED:
            names = ()
        for attr in names:
            value = values.get(attr, "")
            for url in (value.split(",") if attr == "srcset" else [value]):
                url = url.strip().split(" ")[0]
                if _external(url):
                    self.tags.append((t, attr, url))
        self.inline += _URL_IN_TEXT.findall(values.get("style", ""))
        self._in = tag if tag in ("script", "style") else ""

    def handle_endtag(self, tag: str) -> None:
        self._in = ""

    def handle_data(self, data: str) -> None:
        if self._in:
            self.inline += _URL_IN_CODE.findall(data)


def _external(url: str) -> bool:
    return url.startswith(("http://", "https://", "//"))


def external_loads(page: str) -> list[str]:
    """Every URL on another host that loading this HTML page would fetch."""
    parsed = _Loads(page)
    return [url for _t, _a, url in parsed.tags] + parsed.inline


def rewrite_page(page: str, vendored: Sequence[VendoredFile]) -> str:
    """asv's ``index.html`` with every CDN reference pointed at ``_vendor/`` (pure).

    An ``integrity`` attribute is kept when our copy has exactly those bytes (the browser
    then checks them) and dropped when it does not (the same release from npm in another
    build, see scheduler/publish/vendor/README.md). Raises OfflineSiteError naming every URL the
    page loads that has no local copy and every expected URL the page no longer has."""
    by_url = {v.url: v for v in vendored if v.url}
    parsed = _Loads(page)
    unknown = [url for _t, _a, url in parsed.tags if url not in by_url] + parsed.inline
    found = {url for _t, _a, url in parsed.tags}
    missing = [url for url in by_url if url not in found]
    if unknown or missing:
        raise OfflineSiteError(_changed_page_message(unknown, missing))
    edits: list[tuple[int, str, str]] = []
    for tag, _attr, url in parsed.tags:
        v = by_url[url]
        if url not in tag.raw:
            raise OfflineSiteError(f"cannot rewrite {tag.raw!r}: the URL is written with "
                                   "character references")
        new = tag.raw.replace(url, v.href)
        integrity = tag.attrs.get("integrity", "")
        if integrity and not set(integrity.split()) & v.sri:
            new = re.sub(r"""\s+integrity\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)""", "", new)
        edits.append((tag.start, tag.raw, new))
    out = page
    for start, raw, new in sorted(edits, reverse=True):
        assert out[start:start + len(raw)] == raw, raw
        out = out[:start] + new + out[start + len(raw):]
    head = re.search(r"<head[^>]*>", out, re.IGNORECASE)
    at = head.end() if head else 0
    return out[:at] + "\n    " + MARKER + out[at:]


def _changed_page_message(unknown: Iterable[str], missing: Iterable[str]) -> str:
    import asv

    parts = []
    if unknown:
        parts.append("it loads URLs without a local copy: " + ", ".join(unknown))
    if missing:
        parts.append("it no longer loads: " + ", ".join(missing))
    made_for = json.loads((VENDOR_DIR / "manifest.json").read_text(encoding="utf-8"))["asv"]
    return (f"asv {asv.__version__}'s published page is not the one scheduler/publish/vendor/ was "
            f"made for (asv {made_for}): {'; '.join(parts)}; update scheduler/publish/vendor/ (see "
            "its README.md)")


def install_vendor(html_dir: Path, vendor_dir: Path = VENDOR_DIR) -> Path:
    """Copy the vendored files, their licenses and the manifest into ``<html>/_vendor``."""
    dest = html_dir / PUBLISHED_VENDOR
    shutil.copytree(vendor_dir, dest, dirs_exist_ok=True)
    return dest


def make_offline(html_dir: Path, vendor_dir: Path = VENDOR_DIR) -> list[str]:
    """Point asv's published page at local copies; returns the CDN URLs replaced ([] when
    the page was already rewritten). Also checks asv's other pages, scripts and styles
    for URLs on other hosts. Raises OfflineSiteError when the page is not asv's or asks
    for something without a local copy."""
    index = html_dir / "index.html"
    if not index.is_file():
        raise OfflineSiteError(f"{index}: no such file (publish the site with asv first)")
    page = index.read_text(encoding="utf-8")
    if "airspeed velocity" not in page:
        raise OfflineSiteError(f"{index} is not a page published by asv")
    vendored = load_manifest(vendor_dir)
    install_vendor(html_dir, vendor_dir)
    if MARKER in page:  # rewritten before
        new, replaced = page, []
        left = external_loads(page)
        if left:
            raise OfflineSiteError(f"{index} loads URLs on other hosts: {', '.join(left)}")
    else:
        new = rewrite_page(page, vendored)
        replaced = [v.url for v in vendored if v.url]
    problems = []
    for path in sorted(html_dir.iterdir()):
        if path.name == "index.html" or not path.is_file():
            continue
        if path.suffix == ".html":
            urls = external_loads(path.read_text(encoding="utf-8", errors="replace"))
        elif path.suffix in (".js", ".css"):
            urls = _URL_IN_CODE.findall(path.read_text(encoding="utf-8", errors="replace"))
        else:
            continue
        problems += [f"{path.name}: {url}" for url in urls]
    if problems:
        raise OfflineSiteError(_changed_page_message(problems, []))
    if replaced:
        _write(index, new)
    for v in vendored:
        if not (html_dir / v.href).is_file():
            raise OfflineSiteError(f"{html_dir / v.href}: missing after copying")
    return replaced


def add_nav(html_dir: Path, pages: Sequence[tuple[str, str]]) -> list[str]:
    """Link ``pages`` ((href, title), e.g. ("alerts.html", "Alerts")) from the navigation
    bar of asv's page, after its own entries; idempotent. Returns the hrefs added (none
    while ``html_dir`` holds no page published by asv, e.g. the placeholder)."""
    index = html_dir / "index.html"
    page = index.read_text(encoding="utf-8") if index.is_file() else ""
    if "airspeed velocity" not in page:
        return []
    anchor = '<li id="nav-li-graphdisplay">'
    if anchor not in page:
        raise OfflineSiteError(f"{index}: asv's navigation changed (no {anchor}); "
                               "cannot link the service's pages")
    added = []
    for href, title in pages:
        li_id = "nav-li-page-" + re.sub(r"[^A-Za-z0-9]+", "-", Path(href).stem)
        if f'id="{li_id}"' in page:
            continue
        li = (f'<li id="{li_id}"><a href="{html.escape(href)}">{html.escape(title)}</a></li>'
              "\n        ")
        page = page.replace(anchor, li + anchor, 1)
        added.append(href)
    if added:
        _write(index, page)
    return added


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
