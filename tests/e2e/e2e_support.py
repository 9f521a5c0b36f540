"""Shared helpers of the end-to-end load tests (imported by the test modules).

Every test drives a real ``python -m toolserver serve`` subprocess over real sockets with
the instrument (benchmarks/load). Profile: ``smoke`` by default (CI); ``E2E_FULL=1``
switches to the ``full`` profile and also enforces the plan's full criteria
(``E2E_PROFILE`` overrides the profile, e.g. ``quick``). Tables are printed: run with
``pytest -s`` to see them.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.load.api import run_scenario
from benchmarks.load.result import table

REPO = Path(__file__).resolve().parents[2]
SRC = str(REPO / "src")
FULL = os.environ.get("E2E_FULL") == "1"
PROFILE = os.environ.get("E2E_PROFILE", "full" if FULL else "smoke")


def scenario(name: str, **kw: Any) -> dict[str, Any]:
    """Run a scenario against a server the instrument starts; print and return the doc.

    The run gets a temporary directory of its own, which must be empty afterwards: the
    instrument runs every night and before every merge, and what it leaves in /tmp
    (servers' logs, request logs) would pile up.
    """
    if "url" not in kw:
        kw.setdefault("server_python", sys.executable)
        kw.setdefault("server_pythonpath", [SRC])
    scratch, before = tempfile.mkdtemp(prefix="e2e-tmp-"), tempfile.tempdir
    tempfile.tempdir = scratch
    try:
        doc = run_scenario(name, PROFILE, enforce_full=FULL, progress_s=10.0, **kw)
    finally:
        tempfile.tempdir = before
        left = sorted(os.listdir(scratch))
        shutil.rmtree(scratch, ignore_errors=True)
    assert not left, f"the instrument left {left} in its temporary directory"
    print()
    print(table(doc))
    return doc


def failed_criteria(doc: dict[str, Any]) -> list[str]:
    """Criteria that count for this run (ci, plus full under E2E_FULL=1) and failed."""
    scopes = {"ci", "full"} if FULL else {"ci"}
    return [f"{c['name']}: {c['value']} {c['op']} {c['limit']}"
            for c in doc["criteria"] if c["scope"] in scopes and not c["passed"]]


def criterion(doc: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The first criterion whose name starts with ``prefix``."""
    for c in doc["criteria"]:
        if c["name"].startswith(prefix):
            return dict(c)
    raise AssertionError(f"no criterion {prefix!r} in {[c['name'] for c in doc['criteria']]}")


