#!/usr/bin/env bash
# Creates .venv and installs the project with everything the service and the
# tests need. Idempotent and quick when nothing changed; sourced by the other
# scripts so that both README commands work on a fresh machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv with $($PYTHON --version)" >&2
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
    echo "bootstrap: installing the project and its dependencies into .venv" >&2
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[test]"
    rm -f .venv/.installed-* && touch "$stamp"
fi

# System packages used by tests: Debian's Chromium (dashboard tests), the
# PostgreSQL server binaries (request-log test), redis-server (the broker of the
# distributed runners' tests), valgrind and libfaketime (the instruction counts:
# benchmarks/load/instructions.py). Installed when we may.
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/bin/redis-server ] || need+=(redis-server)
command -v valgrind >/dev/null || need+=(valgrind)
ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || need+=(libfaketime)
if [ ${#need[@]} -gt 0 ] && [ "${BOOTSTRAP_SYSTEM:-1}" = 1 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "bootstrap: apt-get install ${need[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
        echo "bootstrap: not installing ${need[*]} (needs root and apt-get); tests that need them skip" >&2
    fi
fi
