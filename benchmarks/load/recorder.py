"""What one load phase observed, in a form that merges exactly across worker processes.

A :class:`Recorder` is owned by one event loop (no locks: all updates happen on the loop
thread). Workers ship :meth:`Recorder.to_wire` to the parent, which merges with
:meth:`Recorder.merge_wire`; histograms travel HDR-encoded, counters as plain dicts, so the
merged result equals what a single process would have recorded.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from . import histogram as H


class Recorder:
    """Counters, HDR histograms and an optional per-bucket timeline for one phase.

    Only requests whose *intended* send time is inside the measurement window are counted
    (``window_start`` .. ``window_end``), so warm-up traffic never pollutes the figures, and
    a request sent inside the window is counted even if its answer arrives after it closed
    (otherwise a stall at the end would be silently dropped).
    """

    def __init__(self, *, timeline_bucket_s: float = 0.0, slices: int = 0) -> None:
        # Successful responses are recorded per *slice* of the window (equal sub-windows),
        # so each figure has repeated samples for asv's statistics; ``latency`` is their
        # exact sum, built by finalize() (one record per response, not two).
        self.slice_hists = [H.new_histogram() for _ in range(slices)]
        self.slice_ok = [0] * slices
        # error replies per slice too: how fast "busy" comes back is a tracked figure
        self.slice_err_hists = [H.new_histogram() for _ in range(slices)]
        self._inv_slice = 0.0
        self.latency = H.new_histogram()        # successful responses, µs
        self.error_latency = H.new_histogram()  # error replies (e.g. busy rejects), µs
        self.connect = H.new_histogram()        # websocket handshake, µs
        self.ready = H.new_histogram()          # handshake + initialize round trip, µs
        self.send_lag = H.new_histogram()       # open loop: actual - intended send, µs
        self.ok = 0
        self.sent = 0
        self.errors: Counter[str] = Counter()        # request-level failures
        self.conn_errors: Counter[str] = Counter()   # connect failures, unexpected closes
        self.connect_attempts = 0
        self.connects_ok = 0
        self.late_replies = 0                   # answers that came after their timeout
        self.outliers_over_1s = 0
        self.window_start = float("inf")
        self.window_end = float("inf")
        self.first_send = float("inf")
        self.last_done = 0.0
        self.cpu_s = 0.0                        # generator process CPU during the phase
        self.timeline_bucket_s = timeline_bucket_s
        self.timeline: dict[int, Counter[str]] = {}

    def set_window(self, start: float, end: float) -> None:
        """Open the measurement window [start, end) (and size its slices)."""
        self.window_start = start
        self.window_end = end
        if self.slice_hists and end > start:
            self._inv_slice = len(self.slice_hists) / (end - start)

    def finalize(self) -> None:
        """Sum the slice histograms into ``latency`` (call once, after the phase)."""
        for hist in self.slice_hists:
            if hist.get_total_count():
                self.latency.add(hist)

    # -- hot path -------------------------------------------------------------------------
    def in_window(self, intended: float) -> bool:
        """True when a request intended at ``intended`` belongs to the measurement."""
        return self.window_start <= intended < self.window_end

    def success(self, intended: float, now: float) -> None:
        """A matched, error-free response; latency from the intended send time."""
        if self.window_start <= intended < self.window_end:
            self.ok += 1
            if self._inv_slice:
                i = int((intended - self.window_start) * self._inv_slice)
                if i >= len(self.slice_ok):
                    i = len(self.slice_ok) - 1
                self.slice_ok[i] += 1
                us = H.record_seconds(self.slice_hists[i], now - intended)
            else:
                us = H.record_seconds(self.latency, now - intended)
            if us > H.OUTLIER_US:
                self.outliers_over_1s += 1
            if now > self.last_done:
                self.last_done = now
        if self.timeline_bucket_s:
            self._tick(now, "ok")

    def failure(self, kind: str, intended: float, now: float, *, replied: bool) -> None:
        """A request that ended in an error of ``kind`` (a reply, a timeout, a lost close)."""
        if self.window_start <= intended < self.window_end:
            self.errors[kind] += 1
            if replied:
                H.record_seconds(self.error_latency, now - intended)
                if self._inv_slice:
                    i = min(int((intended - self.window_start) * self._inv_slice),
                            len(self.slice_err_hists) - 1)
                    H.record_seconds(self.slice_err_hists[i], now - intended)
        if self.timeline_bucket_s:
            self._tick(now, kind)

    def conn_error(self, kind: str, now: float) -> None:
        """Connection-level trouble (counted whether or not inside the window)."""
        self.conn_errors[kind] += 1
        if self.timeline_bucket_s:
            self._tick(now, kind)

    def _tick(self, now: float, kind: str) -> None:
        key = int(now / self.timeline_bucket_s)
        bucket = self.timeline.get(key)
        if bucket is None:
            bucket = self.timeline[key] = Counter()
        bucket[kind] += 1

    # -- merge ----------------------------------------------------------------------------
    def to_wire(self) -> dict[str, Any]:
        """Picklable, JSON-able form (histograms HDR-encoded)."""
        return {
            "latency": H.encode(self.latency),
            "error_latency": H.encode(self.error_latency),
            "connect": H.encode(self.connect),
            "ready": H.encode(self.ready),
            "send_lag": H.encode(self.send_lag),
            "ok": self.ok, "sent": self.sent,
            "errors": dict(self.errors), "conn_errors": dict(self.conn_errors),
            "connect_attempts": self.connect_attempts, "connects_ok": self.connects_ok,
            "late_replies": self.late_replies, "outliers_over_1s": self.outliers_over_1s,
            "window_start": self.window_start, "window_end": self.window_end,
            "first_send": self.first_send, "last_done": self.last_done,
            "cpu_s": self.cpu_s, "timeline_bucket_s": self.timeline_bucket_s,
            "timeline": {str(k): dict(v) for k, v in self.timeline.items()},
            "slice_hists": [H.encode(h) for h in self.slice_hists],
            "slice_ok": list(self.slice_ok),
            "slice_err_hists": [H.encode(h) for h in self.slice_err_hists],
        }

    def merge_wire(self, wire: dict[str, Any]) -> None:
        """Add another recorder's :meth:`to_wire` into this one."""
        for name in ("latency", "error_latency", "connect", "ready", "send_lag"):
            H.merge_into(getattr(self, name), wire[name])
        self.ok += wire["ok"]
        self.sent += wire["sent"]
        self.errors.update(wire["errors"])
        self.conn_errors.update(wire["conn_errors"])
        self.connect_attempts += wire["connect_attempts"]
        self.connects_ok += wire["connects_ok"]
        self.late_replies += wire["late_replies"]
        self.outliers_over_1s += wire["outliers_over_1s"]
        self.window_start = min(self.window_start, wire["window_start"])
        end = wire["window_end"]
        self.window_end = end if self.window_end == float("inf") else max(self.window_end, end)
        self.first_send = min(self.first_send, wire["first_send"])
        self.last_done = max(self.last_done, wire["last_done"])
        self.cpu_s += wire["cpu_s"]
        wire_slices = wire.get("slice_hists", [])
        if wire_slices and not self.slice_hists:
            self.slice_hists = [H.new_histogram() for _ in wire_slices]
            self.slice_ok = [0] * len(wire_slices)
            self.slice_err_hists = [H.new_histogram() for _ in wire_slices]
        for i, text in enumerate(wire_slices[:len(self.slice_hists)]):
            H.merge_into(self.slice_hists[i], text)
            self.slice_ok[i] += wire["slice_ok"][i]
        for i, text in enumerate(wire.get("slice_err_hists", [])[:len(self.slice_err_hists)]):
            H.merge_into(self.slice_err_hists[i], text)
        if wire["timeline_bucket_s"]:
            self.timeline_bucket_s = wire["timeline_bucket_s"]
            for key, counts in wire["timeline"].items():
                self.timeline.setdefault(int(key), Counter()).update(counts)
