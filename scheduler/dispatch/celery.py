"""The broker: one Celery application configured for benchmark jobs, and the few Redis
reads and writes the coordinator and the runners make around it.

Why these Celery settings: a runner measures one job at a time and must never hold a
second one it is not measuring (``worker_concurrency`` 1, ``worker_prefetch_multiplier``
1); a job is acknowledged only when it is measured (``task_acks_late``), so a runner that
dies takes nothing with it: the Redis transport delivers an unacknowledged job again after
``visibility_timeout`` (the runner's main process gone), and ``task_reject_on_worker_lost``
puts it back at once when only the pool process running it died. A broker connection
lost mid-run does not cancel the measurement
(``worker_cancel_long_running_tasks_on_connection_loss`` off): the run goes on and its
result is stored when Redis is back. Results (the asv result file and log) come back
through the Redis result backend, kept for a week so a coordinator that was down collects
them when it is back.

Redelivery means a job can arrive twice. The runner that measures a job holds a lease
on it in Redis (renewed while it runs) and marks it done before returning; a second
delivery that finds either is put off or dropped (``worker.py``), and the coordinator
accepts one outcome per job (``ledger.py``).
"""

from __future__ import annotations

import json
from typing import Any

from celery import Celery

from ..config import DispatchConfig
from .protocol import ANY_QUEUE, cancel_key, done_key, lease_key

RESULT_EXPIRES_S = 7 * 24 * 3600


def make_app(cfg: DispatchConfig) -> Celery:
    """The Celery application of the coordinator and of every runner (same settings)."""
    app = Celery("scheduler", broker=cfg.broker, backend=cfg.broker, set_as_current=False)
    transport = {
        "visibility_timeout": cfg.visibility_timeout_s,
        # how often a runner looks for unacknowledged jobs older than visibility_timeout
        # (kombu's default scans every 10th sweep of 10 s: up to 100 s late)
        "unacked_restore_interval": cfg.restore_interval_s,
        "unacked_restore_throttle": 1,
    }
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        broker_connection_retry_on_startup=True,
        task_default_queue=ANY_QUEUE,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=RESULT_EXPIRES_S,
        task_track_started=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        enable_utc=True,
    )
    return app


class Broker:
    """Redis as the coordinator and the runners use it beside Celery: leases, done and
    cancel marks, and whether a job is still somewhere in the broker."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._client: Any = None

    @property
    def redis(self) -> Any:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.app.conf.broker_url,
                                                socket_timeout=10, socket_connect_timeout=5,
                                                health_check_interval=30)
        return self._client

    # ---- leases (runner) and marks ----------------------------------------------------

    def take_lease(self, tid: str, holder: dict[str, Any], ttl_s: float) -> bool:
        return bool(self.redis.set(lease_key(tid), json.dumps(holder), nx=True,
                                   px=int(ttl_s * 1000)))

    def renew_lease(self, tid: str, holder: dict[str, Any], ttl_s: float) -> None:
        """SET, not EXPIRE: a broker restarted without persistence gets the lease back."""
        self.redis.set(lease_key(tid), json.dumps(holder), px=int(ttl_s * 1000))

    def drop_lease(self, tid: str) -> None:
        self.redis.delete(lease_key(tid))

    def leases(self, tids: list[str]) -> dict[str, dict[str, Any]]:
        """The holders of these jobs' leases (jobs nobody measures are left out)."""
        if not tids:
            return {}
        raw = self.redis.mget([lease_key(t) for t in tids])
        out = {}
        for tid, value in zip(tids, raw, strict=True):
            if value:
                try:
                    out[tid] = json.loads(value)
                except ValueError:
                    out[tid] = {}
        return out

    def all_leases(self) -> dict[str, dict[str, Any]]:
        """Every job being measured now (for ``status``)."""
        prefix = lease_key("")
        tids = [k.decode()[len(prefix):] for k in self.redis.scan_iter(prefix + "*", 500)]
        return self.leases(tids)

    def mark_done(self, tid: str) -> None:
        self.redis.set(done_key(tid), "1", ex=RESULT_EXPIRES_S)

    def is_done(self, tid: str) -> bool:
        return bool(self.redis.exists(done_key(tid)))

    def cancel(self, tid: str) -> None:
        self.redis.set(cancel_key(tid), "1", ex=RESULT_EXPIRES_S)

    def is_cancelled(self, tid: str) -> bool:
        return bool(self.redis.exists(cancel_key(tid)))

    # ---- the broker's own keeping (kombu's Redis layout) ------------------------------

    def in_broker(self, queues: set[str]) -> set[str]:
        """Task ids of the jobs waiting in these queues or delivered and not yet
        acknowledged. kombu keeps a queue as a Redis list of JSON messages (the queue's
        name is the key) and delivered messages in the ``unacked`` hash; its layout has
        not changed since kombu 3, and this is only read to tell a job the broker lost
        (restarted without persistence) from one that waits."""
        found: set[str] = set()
        r = self.redis
        for q in queues:
            for raw in r.lrange(q, 0, -1):
                found |= _task_ids([raw])
        found |= _task_ids(m[0] if isinstance(m, list) and m else m
                           for m in _loads_all(r.hvals("unacked")))
        return found

    def inspect(self, timeout: float = 1.0) -> tuple[dict[str, list[str]], dict[str, Any]]:
        """Live runners: {node name: [queues]} and {node name: [active tasks]} (Celery's
        remote control: the runners answer even while they measure)."""
        insp = self.app.control.inspect(timeout=timeout)
        queues = insp.active_queues() or {}
        active = insp.active() or {}
        return ({w: sorted(q["name"] for q in qs) for w, qs in queues.items()}, active)


def _loads_all(items: Any) -> list[Any]:
    out = []
    for raw in items:
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue
    return out


def _task_ids(messages: Any) -> set[str]:
    ids = set()
    for m in messages:
        if isinstance(m, bytes | str):
            try:
                m = json.loads(m)
            except ValueError:
                continue
        if isinstance(m, dict):
            tid = (m.get("headers") or {}).get("id")
            if tid:
                ids.add(str(tid))
    return ids
