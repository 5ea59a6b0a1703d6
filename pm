#!/usr/bin/env bash
# pm: the one entry point. Creates .venv and installs pmodel (editable, with
# test extras) when missing or when pyproject.toml changed; then
#   ./pm test [pytest args]   runs the test suite
#   ./pm ARGS...              runs `pmodel ARGS...` (e.g. ./pm data build)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${PMODEL_VENV:-$ROOT/.venv}"
STAMP="$VENV/.pmodel-install-stamp"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ]; then
    echo "pm: setting up $VENV (first run, or pyproject.toml changed) ..." >&2
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    LOG="$VENV/pm-install.log"
    if ! { "$VENV/bin/python" -m pip install --disable-pip-version-check --upgrade pip &&
           "$VENV/bin/python" -m pip install --disable-pip-version-check -e "$ROOT[test]"; } >"$LOG" 2>&1; then
        tail -n 40 "$LOG" >&2
        echo "pm: installing failed; full log: $LOG" >&2
        exit 1
    fi
    echo "$want" > "$STAMP"
    echo "pm: environment ready" >&2
fi
export PMODEL_HOME="${PMODEL_HOME:-$ROOT}"
if [ "${1:-}" = "test" ]; then
    shift
    cd "$ROOT"
    exec "$VENV/bin/python" -m pytest "$@"
fi
exec "$VENV/bin/pmodel" "$@"
