#!/usr/bin/env bash
# The README's main command: the regression-tracking service on this
# repository with the embedded defaults (simulated provider, console alerts,
# no Slack). It measures the head of main with the pre-merge profile, keeps
# polling for new commits, and serves the asv history site. The first line it
# prints is the URL of that site, the second when the first measurement will
# be in it. Ctrl-C (or SIGTERM) stops it cleanly.
# Extra arguments go to `python -m scheduler`, e.g. `scripts/start.sh once`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Set-up (venv, pip install) is quiet when it works: its output goes to a log,
# so that the site's URL comes first. On a terminal one line says what is
# happening and is erased afterwards; when set-up fails the log is printed.
mkdir -p .scheduler
log=.scheduler/bootstrap.log
tty=0
[ -t 2 ] && tty=1
[ $tty = 1 ] && printf 'setting up .venv (log: %s) ...' "$log" >&2
if ! BOOTSTRAP_SYSTEM=0 bash scripts/bootstrap.sh >"$log" 2>&1; then
    [ $tty = 1 ] && printf '\r\033[K' >&2
    echo "start: set-up failed (scripts/bootstrap.sh), its output ($log):" >&2
    cat "$log" >&2
    exit 1
fi
[ $tty = 1 ] && printf '\r\033[K' >&2

export PATH="$PWD/.venv/bin:$PATH"
if [ $# -eq 0 ]; then set -- run; fi
exec .venv/bin/python -m scheduler "$@"
