"""HDR latency histograms: recording in microseconds, exact merge across processes.

Why HDR: percentiles of a merged set cannot be computed from per-worker percentiles, and a
list of raw samples does not scale to an hour of load. An HDR histogram keeps every value
within 0.1 % (3 significant figures) in a fixed amount of memory, and its compressed
encoding (``encode``/``decode``) lets worker processes ship their histograms to the parent,
which adds them bucket by bucket, so the merged percentiles are exact to that precision.
"""

from __future__ import annotations

from typing import Any

from hdrh.histogram import HdrHistogram

#: 1 µs .. 1 hour; anything slower than an hour is clamped (and the run is broken anyway).
LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_FIGURES = 3

#: A response slower than this is an "outlier" in the test plan's sense.
OUTLIER_US = 1_000_000

PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p95", 95.0),
    ("p99", 99.0),
    ("p99_9", 99.9),
)


def new_histogram() -> HdrHistogram:
    """A histogram with the instrument's fixed range and precision (merging needs equal ones)."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def record_seconds(hist: HdrHistogram, seconds: float) -> int:
    """Record a duration given in seconds; returns the clamped value in µs."""
    us = int(seconds * 1_000_000)
    if us < LOWEST_US:
        us = LOWEST_US
    elif us > HIGHEST_US:
        us = HIGHEST_US
    hist.record_value(us)
    return us


def encode(hist: HdrHistogram) -> str:
    """Compressed base64 text of the histogram (what goes into the JSON and across processes)."""
    if hist.get_total_count() == 0:
        return ""
    raw = hist.encode()
    return raw.decode("ascii") if isinstance(raw, bytes) else str(raw)


def decode(text: str) -> HdrHistogram:
    """Inverse of :func:`encode`; an empty string gives an empty histogram."""
    if not text:
        return new_histogram()
    hist = new_histogram()
    hist.decode_and_add(text)
    return hist


def merge_into(target: HdrHistogram, text: str) -> None:
    """Add an encoded histogram into ``target`` (exact, bucket-wise)."""
    if text:
        target.decode_and_add(text)


def count_above(hist: HdrHistogram, threshold_us: int) -> int:
    """Number of recorded values strictly above ``threshold_us`` (bucket precision)."""
    if hist.get_total_count() == 0 or hist.get_max_value() <= threshold_us:
        return 0
    total = 0
    for item in hist.get_recorded_iterator():
        if item.value_iterated_to > threshold_us:
            total += item.count_at_value_iterated_to
    return total


def mean_us(hist: HdrHistogram) -> float:
    """``hist.get_mean_value()``, exactly, without hdrh's iterator.

    hdrh's iterator steps through every empty sub-bucket up to the largest value in
    Python (0.2 s per histogram here, five per phase); this scans the counts once and
    does the same arithmetic on the non-empty ones only.
    """
    if not hist.total_count:
        return 0.0
    total = 0
    for index, count in enumerate(hist.counts[:hist.counts_len]):
        if count:
            value = hist.get_highest_equivalent_value(hist.get_value_from_index(index))
            total += count * hist._hdr_median_equiv_value(value)
    return float(total) / hist.total_count


def summary_ms(hist: HdrHistogram) -> dict[str, Any]:
    """Percentiles, mean and max in milliseconds plus count and outliers over 1 s.

    Milliseconds because that is the unit of the test plan's criteria; ``None`` when empty
    (an empty histogram has no percentile, and 0 would read as "infinitely fast" in asv).
    """
    count = hist.get_total_count()
    out: dict[str, Any] = {"count": count}
    if count == 0:
        for name, _ in PERCENTILES:
            out[name] = None
        out.update({"min": None, "mean": None, "max": None, "outliers_over_1s": 0})
        return out
    for name, pct in PERCENTILES:
        out[name] = round(hist.get_value_at_percentile(pct) / 1000.0, 4)
    out["min"] = round(hist.get_min_value() / 1000.0, 4)
    out["mean"] = round(mean_us(hist) / 1000.0, 4)
    out["max"] = round(hist.get_max_value() / 1000.0, 4)
    out["outliers_over_1s"] = count_above(hist, OUTLIER_US)
    return out
