"""PNG plot of a benchmark's recent history for alerts (matplotlib, Agg backend).

Why a picture in the alert: a step in a line is understood at a glance in Slack, without
opening the site; the site link is there for the details.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..results import format_value


def plot_name(alert_key: str) -> str:
    """The file name of an alert's plot in the plots directory (served at ``/_plots/``)."""
    return hashlib.sha1(alert_key.encode()).hexdigest()[:16] + ".png"


def history_png(path: Path, title: str, unit: str,
                points: list[tuple[str, float, float | None, float | None]],
                highlight: set[str], limit: float | None = None) -> Path:
    """Plot (commit, value, ci_low, ci_high) oldest → newest; highlighted commits in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    try:
        xs = list(range(len(points)))
        values = [p[1] for p in points]
        ax.plot(xs, values, marker="o", color="#1f77b4", linewidth=1.2, markersize=4)
        for x, (_c, _v, lo, hi) in zip(xs, points, strict=True):
            if lo is not None and hi is not None:
                ax.vlines(x, lo, hi, color="#1f77b4", alpha=0.4, linewidth=2)
        bad = [x for x, p in zip(xs, points, strict=True) if p[0] in highlight]
        ax.scatter(bad, [values[x] for x in bad], color="#d62728", zorder=5, s=40,
                   label="this alert")
        if limit is not None:
            ax.axhline(limit, color="#d62728", linestyle="--", linewidth=1, label="limit")
        ax.set_xticks(xs)
        ax.set_xticklabels([p[0][:7] for p in points], rotation=60, fontsize=7,
                           fontfamily="monospace")
        ax.set_title(title[:90], fontsize=9)
        ax.set_ylabel(unit or "value", fontsize=8)
        ax.yaxis.set_major_formatter(
            matplotlib.ticker.FuncFormatter(lambda v, _p: format_value(v, unit)))
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if bad or limit is not None:
            ax.legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
