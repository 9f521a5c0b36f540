"""The watched git repository: fetch, list first-parent history, resolve ranges.

Why a mirror for URLs: asv needs a local repository to check commits out of, and the poll
job needs ``git rev-list``; one bare mirror under the state directory serves both and is
fetched once per poll. A local path is used in place (asv does the same), so "." watches
this very checkout with no copy.

Arguments that come from users (the URL, a ``backfill`` range, a ``bless`` commit) are
passed after ``--`` / ``--end-of-options``, so that a value starting with ``-`` is never
taken for an option (``--upload-pack=...``, ``--output=...``). Every error text goes
through :func:`redact_url`: git echoes the URL, credentials included.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..redact import redact_url


class GitError(Exception):
    """A git command failed (bad URL, unknown branch, bad range)."""


@dataclass(frozen=True)
class Commit:
    """The facts about a commit that alerts and the queue need."""

    hash: str
    author: str
    date: int  # committer date, unix seconds
    subject: str

    @property
    def short(self) -> str:
        return self.hash[:8]


_FMT = "%H%x1f%an <%ae>%x1f%ct%x1f%s"


def _env() -> dict[str, str]:
    # a daemon started from a terminal must fail, not wait for a password on it
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0"}


class GitRepo:
    """A local path used in place, or a bare mirror of a URL in ``mirror_dir``."""

    def __init__(self, url: str, *, local_path: Path | None, mirror_dir: Path) -> None:
        self.url = url
        self.shown_url = redact_url(url)  # for messages: never the credentials
        self.local = local_path is not None
        self.path = local_path if local_path is not None else mirror_dir

    def _git(self, *args: str, timeout: float = 600) -> str:
        try:
            proc = subprocess.run(["git", "-C", str(self.path), *args], capture_output=True,
                                  text=True, timeout=timeout, check=False, env=_env())
        except subprocess.TimeoutExpired:
            raise GitError(redact_url(f"git {' '.join(args)} timed out after {timeout:.0f}s")
                           ) from None
        if proc.returncode != 0:
            raise GitError(redact_url(f"git {' '.join(args)} failed in {self.path}: "
                                      f"{proc.stderr.strip() or proc.stdout.strip()}"))
        return proc.stdout

    def fetch(self) -> None:
        """Bring the repository up to date (clone the mirror the first time)."""
        if self.local:
            if not (self.path / ".git").exists() and not (self.path / "HEAD").exists():
                raise GitError(f"watched repository {self.path} is not a git repository")
            return
        if not (self.path / "HEAD").exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(["git", "clone", "--mirror", "--", self.url, str(self.path)],
                                  capture_output=True, text=True, timeout=3600, check=False,
                                  env=_env())
            if proc.returncode != 0:
                raise GitError(redact_url(f"git clone --mirror {self.url} failed: "
                                          f"{proc.stderr.strip()}"))
            return
        self._git("fetch", "--prune", "origin", timeout=3600)

    def resolve(self, rev: str) -> str:
        return self._git("rev-parse", "--verify", "--quiet", "--end-of-options",
                         rev + "^{commit}").strip()

    def branch_ref(self, branch: str) -> str:
        return f"refs/heads/{branch}"

    def head(self, branch: str) -> Commit:
        commits = self.first_parent(branch, limit=1)
        if not commits:
            raise GitError(f"branch {branch!r} has no commits")
        return commits[0]

    def first_parent(self, branch: str, *, limit: int | None = None) -> list[Commit]:
        """The branch's first-parent history, newest first (what 'before/after' means)."""
        args = ["log", "--first-parent", f"--format={_FMT}"]
        if limit:
            args.append(f"-n{limit}")
        try:
            out = self._git(*args, self.branch_ref(branch), "--")
        except GitError as exc:
            raise GitError(f"cannot read branch {branch!r} of {self.shown_url}: {exc}") from None
        return _parse(out)

    def rev_list(self, rev_range: str) -> list[Commit]:
        """Commits of a range in first-parent order, newest first (``a..b``, ``x^!``, ...)."""
        out = self._git("log", "--first-parent", f"--format={_FMT}", "--end-of-options",
                        *rev_range.split(), "--")
        return _parse(out)

    def parent(self, rev: str) -> str:
        """The first parent's hash ("" for a root commit)."""
        out = self._git("rev-list", "--parents", "-n1", "--end-of-options", rev, "--").split()
        return out[1] if len(out) > 1 else ""

    def info(self, rev: str) -> Commit:
        out = self._git("log", "-n1", f"--format={_FMT}", "--end-of-options", rev, "--")
        commits = _parse(out)
        if not commits:
            raise GitError(f"unknown commit {rev!r}")
        return commits[0]


def _parse(out: str) -> list[Commit]:
    commits = []
    for line in out.splitlines():
        if not line.strip():
            continue
        parts = line.split("\x1f")
        if len(parts) != 4:
            continue
        commits.append(Commit(hash=parts[0], author=parts[1], date=int(parts[2]),
                              subject=parts[3]))
    return commits
