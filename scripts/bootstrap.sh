#!/usr/bin/env bash
# Installs everything marketpipe needs on a fresh Debian/Ubuntu machine: system packages that are
# missing (PostgreSQL server for the local stack, a Java runtime for Spark, Prometheus for the
# metrics tests, Chromium and its driver for the dashboard's browser test) and a project venv.
# Safe to run again: each step checks first.
set -euo pipefail

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-dev}

log() { printf 'bootstrap: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@";
    elif command -v sudo >/dev/null 2>&1; then sudo "$@";
    else log "need root for: $*"; return 1; fi
}

have_postgres() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1; }
have_java() { command -v java >/dev/null 2>&1; }
# Prometheus and promtool: the metrics tests scrape the stages and check the alert rules.
have_prometheus() { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }

apt_packages=()
have_postgres || apt_packages+=(postgresql)
have_java || apt_packages+=(openjdk-17-jre-headless)
have_prometheus || apt_packages+=(prometheus)
# Chromium and chromedriver: the dashboard's test opens it in a real headless browser.
have_chromium() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }
have_chromium || apt_packages+=(chromium chromium-driver)

if [ "${#apt_packages[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        log "missing ${apt_packages[*]} and no apt-get here: install them with your package manager"
        exit 1
    fi
    log "installing system packages: ${apt_packages[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
fi

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"bootstrap: marketpipe needs Python >= 3.11, {sys.executable} is {sys.version.split()[0]}")
PY

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
log "installing marketpipe[$EXTRAS] into $VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]"
log "ready: $VENV/bin/marketpipe"
