#!/usr/bin/env bash
# Sourced by tests/run-all.sh: the governance store's tests and the replica tests start real
# PostgreSQL servers of their own (initdb and pg_ctl under a temporary directory, on a free
# port; see tests/support/postgres.rs). Installs Debian's `postgresql` when its server
# binaries are missing, or says why it cannot; never skips those tests.
pg_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}
if [ -z "${MESHGATE_PG_BIN:-}" ] && [ -z "$(pg_bin)" ] && ! command -v initdb >/dev/null 2>&1; then
    echo "installing PostgreSQL (Debian package postgresql) for the governance store's tests" >&2
    sudo_if_needed=""
    if [ "$(id -u)" != 0 ]; then sudo_if_needed=sudo; fi
    $sudo_if_needed apt-get install -y -q postgresql >/dev/null ||
        { $sudo_if_needed apt-get update -q >/dev/null && $sudo_if_needed apt-get install -y -q postgresql >/dev/null; } ||
        { echo "cannot install postgresql: install PostgreSQL's server (initdb, pg_ctl) or set MESHGATE_PG_BIN, and run again" >&2; exit 1; }
fi
if [ -z "${MESHGATE_PG_BIN:-}" ] && [ -n "$(pg_bin)" ]; then
    export MESHGATE_PG_BIN="$(pg_bin)"
fi
# As root, the servers run as the `postgres` user the package creates (PostgreSQL refuses
# root); check it exists now rather than in the middle of the tests.
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    echo "running as root, but there is no \`postgres\` user to run the test servers as: install Debian's postgresql package" >&2
    exit 1
fi
