"""The import rules of docs/ARCHITECTURE.md, checked on the source (AST, nothing imported).

* ``scheduler/policy/`` is pure: no database, process, clock, network or git, directly or
  through what it imports; from the scheduler it imports only itself and the result model
  (``scheduler/results.py``).
* ``store/``, ``measure/``, ``publish/`` never import the layer that drives them
  (``pipeline``, ``cli``, ``daemon``, ``jobs``).
* The scheduler never imports ``selftest``, except ``cli.selftest_alias`` when
  ``python -m scheduler evaluate|calibrate`` runs; ``src/`` and ``benchmarks/`` import
  neither the self-test nor the scheduler.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IO = {"sqlite3", "subprocess", "time", "datetime", "socket", "threading", "os", "shutil",
      "urllib", "http", "asyncio", "signal", "requests", "slack_sdk", "apscheduler",
      "celery", "tempfile"}
DRIVERS = {"scheduler.pipeline", "scheduler.cli", "scheduler.daemon", "scheduler.jobs"}
SELFTEST_ALIAS = (ROOT / "scheduler" / "cli.py", "selftest_alias")


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    module: str  # absolute dotted name
    function: str | None  # the enclosing function, None at module level


def module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[Import]:
    """Every import of one file, relative ones resolved (``from . import x`` is ``pkg.x``
    when x is a module of pkg)."""
    package = module_of(path) if path.name == "__init__.py" else module_of(path).rpartition(".")[0]

    def visit(node: ast.AST, function: str | None) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from visit(child, child.name)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(path, child.lineno, alias.name, function)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - (child.level - 1)]
                    base = ".".join([*parts, *([base] if base else [])])
                for alias in child.names:
                    sub = ROOT.joinpath(*base.split("."), alias.name)
                    is_module = sub.with_suffix(".py").is_file() or (sub / "__init__.py").is_file()
                    yield Import(path, child.lineno, f"{base}.{alias.name}" if is_module
                                 else base, function)
            yield from visit(child, function)

    yield from visit(ast.parse(path.read_text(), str(path)), None)


def files(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (ROOT / d).rglob("*.py") if ".venv" not in p.parts)


def where(i: Import) -> str:
    return f"{i.path.relative_to(ROOT)}:{i.line} imports {i.module}"


def inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def source_of(module: str) -> Path | None:
    p = ROOT.joinpath(*module.split("."))
    for cand in (p.with_suffix(".py"), p / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def test_the_policy_imports_no_io_and_no_other_part() -> None:
    """The judging core stays pure: no I/O in its imports, directly or through the
    scheduler modules it imports, and no part of the scheduler other than itself and the
    result model."""
    bad = []
    for i in (i for p in files("scheduler/policy") for i in imports(p)):
        if inside(i.module, "scheduler") and not (
                inside(i.module, "scheduler.policy") or i.module == "scheduler.results"):
            bad.append(where(i))
    todo, seen = files("scheduler/policy"), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for i in imports(path):
            if i.module.split(".")[0] in IO:
                bad.append(where(i))
            elif inside(i.module, "scheduler") and (src := source_of(i.module)):
                todo.append(src)
    assert not bad, bad
    assert ROOT / "scheduler" / "results.py" in seen  # the walk follows scheduler imports


def test_the_parts_never_import_the_layer_that_drives_them() -> None:
    bad = [where(i) for i in (i for p in files("scheduler/store", "scheduler/measure",
                                               "scheduler/publish") for i in imports(p))
           if any(inside(i.module, d) for d in DRIVERS)]
    assert not bad, bad


def test_the_scheduler_imports_the_selftest_only_in_the_alias() -> None:
    found = [i for p in files("scheduler") for i in imports(p) if inside(i.module, "selftest")]
    bad = [where(i) for i in found if (i.path, i.function) != SELFTEST_ALIAS]
    assert not bad, bad
    assert found, "the alias python -m scheduler evaluate|calibrate imports selftest.cli"


def test_the_server_and_the_instrument_never_import_the_service_or_the_selftest() -> None:
    """The server is what is measured, the instrument runs in its own interpreter: neither
    depends on the service that drives them."""
    bad = [where(i) for i in (i for p in files("src", "benchmarks") for i in imports(p))
           if inside(i.module, "selftest") or inside(i.module, "scheduler")]
    assert not bad, bad
