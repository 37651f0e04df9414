#!/usr/bin/env bash
# Install everything and run every gate: ruff, mypy --strict, pytest with a coverage floor.
# PostgreSQL and MariaDB tests need the servers on 127.0.0.1 (see README); the end-to-end tests
# need root (Asterisk runs in a chroot). With CI=true a missing dependency fails the run instead
# of skipping its tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh dev

# The end-to-end tests run a real Asterisk in a Debian chroot (debootstrap) and drive it with
# SIPp (Debian package sip-tester); the locution build test speaks with espeak-ng and sox; the
# multi-server test relays SIP through a real Kamailio.
# Install them once, as root, when they are missing.
missing=()
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
command -v sipp >/dev/null || missing+=(sip-tester)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v sox >/dev/null || missing+=(sox)
command -v kamailio >/dev/null || [ -x /usr/sbin/kamailio ] || missing+=(kamailio)
# `bench cost` counts instructions under Valgrind's callgrind.
command -v valgrind >/dev/null || missing+=(valgrind)
# The edge (Kamailio over PostgreSQL/MariaDB, rtpengine in user space), without what the
# packages recommend (rtpengine's recording daemon and utilities are not used).
edge=()
for package in kamailio-postgres-modules kamailio-mysql-modules; do
    dpkg -s "$package" >/dev/null 2>&1 || edge+=("$package")
done
command -v rtpengine >/dev/null || [ -x /usr/bin/rtpengine ] || edge+=(rtpengine-daemon)
# The live console page's browser test drives Debian's headless Chromium (DevTools protocol).
command -v chromium >/dev/null || missing+=(chromium)
if [ "$((${#missing[@]} + ${#edge[@]}))" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== apt-get install ${missing[*]} ${edge[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null
        [ "${#missing[@]}" = 0 ] || apt-get install -y -q "${missing[@]}" >/dev/null
        [ "${#edge[@]}" = 0 ] || apt-get install -y -q --no-install-recommends "${edge[@]}" >/dev/null
    else
        echo "note: ${missing[*]} ${edge[*]} missing (needs root and apt-get): the tests that need them will skip" >&2
    fi
fi

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy --strict"
.venv/bin/mypy callcontrol dialplan models locutions
echo "== pytest"
# The slowest tests are listed at the end: the whole run must stay within half an hour.
.venv/bin/python -m pytest --durations=15 --cov --cov-report=term --cov-fail-under="$(cat .ci/coverage-floor)" "$@"
