"""What the coordinator and the runners say to each other, with no I/O: targets and their
Celery queues, the job a runner receives, the outcome it sends back, the Redis keys of a
job's lease, and the identity of the instrument.

Why a plain dict on the wire (JSON): a runner may run another checkout of this project;
the message has to be readable by both sides and by a human looking into Redis, never a
pickle of classes that moved.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Celery task names (the coordinator sends by name; only the runner imports the code).
MEASURE_TASK = "scheduler.measure"
#: (the side-by-side task keeps its first name: a wire name runners and queued jobs know)
SIDE_BY_SIDE_TASK = "scheduler.paired"
ANY_QUEUE = "any"

#: Outcome statuses: done / failed are the commit's (reported like a local run); error is
#: the runner's (its asv cannot run, its instrument differs): the job is sent again later.
DONE, FAILED, ERROR = "done", "failed", "error"

LOG_TAIL = 200_000  # characters of the asv log kept (the state keeps as much)


def queue_of(target: str) -> str:
    """The Celery queue of a target: ``any`` → ``any``, ``machine:a`` → ``machine.a``,
    ``queue:gpu`` → ``queue.gpu`` (prefixed so a machine and a queue never share one)."""
    if target == "any":
        return ANY_QUEUE
    kind, _, name = target.partition(":")
    if kind not in ("machine", "queue") or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"not a target: {target!r}")
    return f"{kind}.{name}"


def worker_queues(machine: str, queues: tuple[str, ...] = ()) -> list[str]:
    """The queues a runner consumes: its machine's, the kinds it was given, and ``any``."""
    return [queue_of(f"machine:{machine}"), *(queue_of(f"queue:{q}") for q in queues),
            ANY_QUEUE]


def machine_of_queues(queues: list[str]) -> str:
    """The machine name of a runner from the queues it consumes ("" if none)."""
    return next((q[len("machine."):] for q in queues if q.startswith("machine.")), "")


def task_id(commit: str, profile: str, target: str, kind: str, attempt: int,
            origin: str) -> str:
    """The job's identity, also its Celery task id: one job is measured at most once.
    ``origin`` is the machine whose own queue asked for it ("" = the coordinator's queue
    of new commits), so a bisection on machine a and a new-commit job never collide."""
    where = f"{origin}/" if origin else ""
    return f"{where}{commit[:12]}.{profile}.{target}.{kind}.{attempt}"


def lease_key(tid: str) -> str:
    """Held (with a time to live) by the runner measuring the job."""
    return f"scheduler:lease:{tid}"


def done_key(tid: str) -> str:
    """Set by the runner when the job is measured: a late second delivery is dropped."""
    return f"scheduler:done:{tid}"


def cancel_key(tid: str) -> str:
    """Set by the coordinator for a job it gave up on (and sent again as attempt + 1)."""
    return f"scheduler:cancel:{tid}"


def instrument_id(asv_config: Path, benchmark_dir: Path) -> str:
    """A digest of the asv project configuration and every file of the benchmark suite
    and instrument: a runner whose checkout differs from the coordinator's measures with
    another instrument, and its figures are not comparable."""
    h = hashlib.sha256()
    h.update(asv_config.read_bytes())
    for path in sorted(benchmark_dir.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            h.update(str(path.relative_to(benchmark_dir)).encode() + b"\0")
            h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Job:
    """One measurement request: what the runner needs to run it, nothing more."""

    task_id: str
    commit: str
    profile: str
    kind: str
    target: str
    attempt: int
    instrument: str  # instrument_id of the coordinator's checkout
    asv_args: tuple[str, ...] = ()  # [asv] extra_args of the coordinator (e.g. -b REGEX)
    run_timeout_s: float = 4 * 3600.0

    def to_wire(self) -> dict[str, Any]:
        return {**asdict(self), "asv_args": list(self.asv_args)}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Job:
        return cls(task_id=str(d["task_id"]), commit=str(d["commit"]),
                   profile=str(d["profile"]), kind=str(d["kind"]), target=str(d["target"]),
                   attempt=int(d["attempt"]), instrument=str(d["instrument"]),
                   asv_args=tuple(str(a) for a in d.get("asv_args", ())),
                   run_timeout_s=float(d.get("run_timeout_s", 4 * 3600.0)))


@dataclass
class Outcome:
    """What a runner sends back for a measure job."""

    status: str  # DONE | FAILED | ERROR
    machine: str
    worker: str
    error: str = ""
    log: str = ""
    seconds: float = 0.0
    returncode: int | None = None
    # the asv result file (name in results/<machine>-<profile>/, text), machine.json and
    # the results' benchmarks.json, as the runner's asv wrote them
    result_name: str = ""
    result: str = ""
    machine_json: str = ""
    benchmarks_json: str = ""
    # the instrument's documents of the run (BENCH_RESULTS_DIR: the capacity knee, the
    # soak's verdict), a gzipped tar, base64
    documents: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        d = asdict(self)
        d["log"] = self.log[-LOG_TAIL:]
        return d

    @classmethod
    def from_wire(cls, d: Any) -> Outcome:
        if not isinstance(d, dict) or d.get("status") not in (DONE, FAILED, ERROR):
            raise ValueError(f"not a runner outcome: {str(d)[:200]!r}")
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def result_name_ok(name: str, commit: str) -> bool:
    """A result file name a runner may make the coordinator write: ``<hash8>-<env>.json``."""
    return bool(re.fullmatch(r"[0-9a-f]{8}-[A-Za-z0-9_.-]+\.json", name)) and \
        name.startswith(commit[:8])


def pack_dir(path: Path) -> str:
    """A directory as a gzipped tar, base64 (its files, relative to it)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in sorted(path.rglob("*")):
            if f.is_file():
                tar.add(f, arcname=str(f.relative_to(path)))
    return base64.b64encode(buf.getvalue()).decode("ascii")


def unpack_dir(text: str, dest: Path) -> None:
    """The inverse of :func:`pack_dir`; members that would leave ``dest`` are refused."""
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(text)), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")
