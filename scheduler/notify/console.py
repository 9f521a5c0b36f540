"""Console backend: the default when Slack is not configured.

Alerts are printed (stderr, so stdout stays parseable) and appended as JSON lines to
``<state>/alerts.jsonl`` — the file a human or a script can read later.
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
             save_progress: Progress) -> None:
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
        with open(self.outbox_file, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"time": time.time(), **message}) + "\n")
