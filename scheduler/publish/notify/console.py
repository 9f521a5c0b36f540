"""Console backend: the default when Slack is not configured.

Alerts are printed (stderr, so stdout stays parseable) and appended as JSON lines to
``<state>/alerts.jsonl`` — the file a human or a script can read later. Each line carries
its outbox ``key``; a delivery interrupted after the line was written (progress
``writing``) finds it there and does not write it again.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from .base import Progress


class ConsoleNotifier:
    name = "console"

    def __init__(self, outbox_file: Path, stream: TextIO | None = None) -> None:
        self.outbox_file = outbox_file
        self.stream = stream

    def send(self, message: dict[str, Any], progress: dict[str, Any],
             save_progress: Progress, *, key: str = "") -> None:
        if progress.get("writing") and key and self._written(key):
            return
        stream = self.stream or sys.stderr
        bar = "=" * 72
        print(f"\n{bar}\n{message.get('text', '')}", file=stream)
        for line in message.get("details", []):
            print(f"  {line}", file=stream)
        if message.get("link"):
            print(f"  graph: {message['link']}", file=stream)
        if message.get("plot"):
            print(f"  plot:  {message['plot']}", file=stream)
        print(bar, file=stream, flush=True)
        self.outbox_file.parent.mkdir(parents=True, exist_ok=True)
        progress["writing"] = time.time()
        save_progress(progress)
        with open(self.outbox_file, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"time": time.time(), "key": key, **message}) + "\n")

    def _written(self, key: str) -> bool:
        try:
            lines = self.outbox_file.read_text(encoding="utf-8").splitlines()
        except OSError:
            return False
        for line in reversed(lines):
            try:
                if json.loads(line).get("key") == key:
                    return True
            except ValueError:
                continue  # a line cut by a kill
        return False
