#!/usr/bin/env bash
# The README's main command: the regression-tracking service on this
# repository with the embedded defaults (simulated provider, console alerts,
# no Slack). It measures the head of main with the pre-merge profile, keeps
# polling for new commits, and serves the asv history site; the first line it
# prints is the URL of that site. Ctrl-C (or SIGTERM) stops it cleanly.
# Extra arguments go to `python -m scheduler`, e.g. `scripts/start.sh once`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BOOTSTRAP_SYSTEM=0 bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
if [ $# -eq 0 ]; then set -- run; fi
exec .venv/bin/python -m scheduler "$@"
