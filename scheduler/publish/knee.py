"""The capacity page: latency against offered load per tool (the knee), next to the asv site.

asv keeps one number per series (here 1e6 / capacity), but a breaking point is read from
its curve: where p99 leaves the flat part and how steeply it climbs past it, and what
failed first. The capacity scenario keeps every step of its searches in its document
(``analysis["capacity"]``), which the harness copies to ``<state>/instrument/<commit>-
<profile>/capacity.json``; after each ``asv publish`` (which rewrites ``html/``) this
module draws the newest document of each profile into ``html/capacity.html`` (plots in
``html/capacity/``).

Linked from asv's navigation bar as "Capacity" (``scheduler/publish/site.py`` ``PAGES``), and
back to the site.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

PAGE = "capacity.html"
IMAGES = "capacity"  # the plots, one per profile, next to the page
TITLE = "Capacity: latency against offered load"


def newest_documents(root: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """profile -> (commit prefix, document) of the newest readable capacity document."""
    found: dict[str, tuple[float, str, dict[str, Any]]] = {}
    for path in root.glob("*/capacity.json") if root.is_dir() else ():
        commit, _, profile = path.parent.name.partition("-")
        try:
            mtime = path.stat().st_mtime
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a half-copied or corrupt document: the previous one stays shown
        if not isinstance(doc, dict) or "capacity" not in doc.get("analysis", {}):
            continue
        if profile not in found or mtime > found[profile][0]:
            found[profile] = (mtime, commit, doc)
    return {p: (c, d) for p, (_m, c, d) in sorted(found.items())}


def publish(documents: Path, html_dir: Path) -> Path:
    """Write ``html_dir/capacity.html`` from the newest capacity documents (a page that says
    none was kept yet when there is none: the site's navigation links it either way)."""
    docs = newest_documents(documents)
    out = html_dir / IMAGES
    out.mkdir(parents=True, exist_ok=True)
    sections = [] if docs else [
        "<p>No capacity measurement has been kept yet: the <code>capacity</code> scenario "
        "runs in the quick and full profiles (asv benchmark <code>capacity.Capacity</code>)"
        "; this page shows the newest of each profile after the next run.</p>"]
    for profile, (commit, doc) in docs.items():
        image = f"knee-{profile}.png"
        plot(doc["analysis"]["capacity"], out / image,
             f"{commit} · profile {profile} · {doc.get('started_at', '')[:16]}")
        sections.append(_section(profile, commit, doc, f"{IMAGES}/{image}"))
    page = html_dir / PAGE
    page.write_text(_PAGE.format(title=html.escape(TITLE), body="\n".join(sections)),
                    encoding="utf-8")
    return page


def plot(capacity: dict[str, Any], path: Path, subtitle: str) -> Path:
    """p99 (solid) and p50 (dotted) against offered msg/s, one panel per tool, one colour
    per client count; failed steps hollow, the capacity a vertical line, the limit a
    horizontal one. A rate run twice (a near miss is retried) is drawn at its better run —
    host stalls only make a run slower — with the other run as a small cross."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tools = capacity.get("tools", {})
    limit = float(capacity.get("p99_limit_ms", 200.0))
    fig, axes = plt.subplots(1, max(1, len(tools)), figsize=(4.2 * max(1, len(tools)), 3.6),
                             dpi=100, squeeze=False)
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    try:
        for ax, (tool, by_clients) in zip(axes[0], tools.items(), strict=False):
            for k, (clients, entry) in enumerate(sorted(by_clients.items(),
                                                        key=lambda kv: int(kv[0]))):
                colour = colours[k % len(colours)]
                best: dict[float, dict[str, Any]] = {}
                others = []
                for s in entry.get("steps", []):
                    if not s.get("p99_ms"):
                        continue
                    rate = s["offered_msg_s"]
                    if rate not in best or s["p99_ms"] < best[rate]["p99_ms"]:
                        if rate in best:
                            others.append(best[rate])
                        best[rate] = s
                    else:
                        others.append(s)
                steps = [best[r] for r in sorted(best)]
                xs = [s["offered_msg_s"] for s in steps]
                ax.plot(xs, [s["p99_ms"] for s in steps], color=colour, linewidth=1.2,
                        label=f"{clients} clients p99")
                ax.plot(xs, [s["p50_ms"] or math.nan for s in steps], color=colour,
                        linewidth=0.8, linestyle=":")
                for s in steps:
                    ax.scatter([s["offered_msg_s"]], [s["p99_ms"]], s=22, zorder=5,
                               color=colour if s.get("passed") else "white",
                               edgecolors=colour)
                if others:
                    ax.scatter([s["offered_msg_s"] for s in others],
                               [s["p99_ms"] for s in others], s=12, marker="x",
                               color=colour, alpha=0.5, zorder=4)
                cap = entry.get("capacity_msg_s")
                if cap:
                    ax.axvline(cap, color=colour, linestyle="--", linewidth=0.8)
            ax.axhline(limit, color="black", linestyle="--", linewidth=0.8,
                       label=f"p99 limit {limit:g} ms")
            ax.set_xscale("log")
            ax.set_yscale("log")
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_formatter(matplotlib.ticker.FuncFormatter(
                    lambda v, _p: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
                axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_title(tool, fontsize=10)
            ax.set_xlabel("offered load (msg/s)", fontsize=8)
            ax.set_ylabel("latency (ms)", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=6, loc="upper left")
        fig.suptitle(f"latency against offered load — {subtitle}", fontsize=9)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def _section(profile: str, commit: str, doc: dict[str, Any], image: str) -> str:
    cap = doc["analysis"]["capacity"]
    rows = []
    for tool, by_clients in cap.get("tools", {}).items():
        for clients, e in sorted(by_clients.items(), key=lambda kv: int(kv[0])):
            c = e.get("capacity_msg_s")
            rows.append(
                f"<tr><td>{html.escape(tool)}</td><td>{html.escape(str(clients))}</td>"
                f"<td>{_n(c)}</td><td>{_n(1e6 / c, 1) if c else '—'}</td>"
                f"<td>{_n(e.get('first_fail_msg_s'))}</td>"
                f"<td>{html.escape(', '.join(e.get('fails_first', [])) or '—')}</td>"
                f"<td>{html.escape(str(e.get('bound', '')))}</td>"
                f"<td>{len(e.get('steps', []))}"
                f"{' (budget)' if e.get('truncated') else ''}</td></tr>")
    machine = doc.get("machine", {})
    return f"""<h2>profile {html.escape(profile)} — commit <code>{html.escape(commit)}</code></h2>
<p>{html.escape(doc.get('started_at', ''))}, {doc.get('elapsed_s', 0):.0f} s;
p99 limit {cap.get('p99_limit_ms')} ms, errors under {100 * cap.get('max_error_fraction', 0):g} %;
resolution ×{cap.get('resolution')}; host {html.escape(str(machine.get('hostname', '')))},
load average {machine.get('load_avg_1m', '?')} at the start.</p>
<img src="{image}" alt="latency against offered load, profile {html.escape(profile)}">
<table><tr><th>tool</th><th>clients</th><th>capacity (msg/s)</th><th>µs per message</th>
<th>first failure (msg/s)</th><th>fails first</th><th>bound</th><th>steps</th></tr>
{''.join(rows)}</table>"""


def _n(x: float | None, nd: int = 0) -> str:
    return "—" if x is None else f"{x:,.{nd}f}"


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:1.5em;max-width:80em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:.2em .6em;
text-align:right}}img{{max-width:100%}}</style></head><body>
<p><a href="index.html">← benchmark history</a></p>
<h1>{title}</h1>
<p>Per tool and client count, the highest offered rate (open loop, Poisson arrivals;
latency from the intended send time) at which p99 stays under the limit and errors under
0.1 %, found by stepping and bisecting (benchmarks/load/scenarios/capacity.py). Filled
points passed, hollow ones failed; the dashed vertical lines are the capacities. "fails
first" is what went wrong at the lowest failing rate; "bound" says whether the server
(or the instrument, or the search's range) set the figure; "(budget)": the search ran out
of its share of the scenario's time budget and its bracket is coarser. asv tracks
1e6 / capacity as
<code>capacity.Capacity.track_time_per_message_at_capacity</code>.</p>
{body}
</body></html>
"""
