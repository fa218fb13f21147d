#!/usr/bin/env bash
# Ping'an Bus — the two commands of the README.
#   ./run.sh demo   set up everything, start the local stack and run the Wenchuan demo
#   ./run.sh test   set up everything, check the import layers, start the local stack, run the whole
#                  test suite, stop the stack
# Needs: Python 3.11+, Java 17+, Maven. Everything else is installed by this script.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY=${PYTHON:-python3}

log() { printf '\033[1;34m[pingan]\033[0m %s\n' "$*"; }

setup_python() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment in .venv"
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    log "installing Python packages (pinned in pyproject.toml)"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -e ".[test]"
    touch "$stamp"
  fi
}

check_prereqs() {
  command -v java >/dev/null || { echo "Java 17+ is required (apt-get install openjdk-17-jdk-headless)" >&2; exit 2; }
  command -v mvn  >/dev/null || { echo "Maven is required (apt-get install maven)" >&2; exit 2; }
}

# Test peers from Debian's packages (DESIGN.md §10): PostgreSQL for the 110 poller, sipp for the
# GB/T 28181 cascade, Chromium for the page's end-to-end test. Installed only when missing and root.
setup_test_peers() {
  local missing=()
  command -v sipp >/dev/null || missing+=(sip-tester)
  command -v chromium >/dev/null || missing+=(chromium)
  [ -x /usr/lib/postgresql/*/bin/postgres ] 2>/dev/null || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
  dpkg -s fonts-noto-cjk >/dev/null 2>&1 || missing+=(fonts-noto-cjk)  # Chinese glyphs for Chromium
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      log "installing test peers: ${missing[*]}"
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      log "not root: tests needing ${missing[*]} will be skipped"
    fi
  fi
}

cmd=${1:-}
shift || true
case "$cmd" in
  demo)
    check_prereqs; setup_python
    "$VENV/bin/pingan" infra up
    exec "$VENV/bin/pingan" demo run "$@"
    ;;
  test)
    check_prereqs; setup_python; setup_test_peers
    log "checking the import layers (lint-imports; contracts in pyproject.toml, docs/architecture.md)"
    "$VENV/bin/lint-imports" --no-cache
    "$VENV/bin/pingan" infra up
    trap '"$VENV/bin/pingan" infra down' EXIT
    "$VENV/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: ./run.sh demo|test [args]" >&2; exit 2 ;;
esac
