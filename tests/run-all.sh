#!/usr/bin/env bash
# Every test meshgate has, on a fresh machine: formatting, lints, Rust unit and integration
# tests (the governance store's on real PostgreSQL servers, installed from Debian's package
# when missing), doc tests, the examples for embedders, and the Python Flight SQL client tests
# (ADBC, the SQLAlchemy dialects, the Arrow Flight SQL JDBC driver run by Maven) and the
# console's browser tests (Playwright driving Debian's Chromium, installed when missing) in
# virtualenvs this script creates. Builds are reused from $CARGO_TARGET_DIR (default
# ~/.cache/meshgate/target), the venvs from ~/.cache/meshgate/venv*, Maven's repository from
# ~/.cache/meshgate/m2.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/meshgate/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
venv="${MESHGATE_VENV:-$HOME/.cache/meshgate/venv}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

step() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }

. tests/need-protoc.sh
. tests/need-postgres.sh
. tests/need-chromium.sh
. tests/need-maven.sh

step "format"
cargo fmt --all --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "rust tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi

step "doc tests"
cargo test --workspace --doc --locked

step "examples for embedders"
# Built with the whole workspace, as `cargo test` built it: `cargo run -p meshgate` alone
# would resolve other features and rebuild the stack. Each example checks its own outcome
# and exits non-zero when it is wrong; the greps pin what a reader is promised.
cargo build --quiet --locked --workspace --tests --bins --examples
example() {
    local name="$1"
    shift
    echo "-- example $name"
    MESHGATE_DATA_DIR="$scratch/mesh" "$CARGO_TARGET_DIR/debug/examples/$name" "$@" | tee "$scratch/$name.out"
}
example embedded
grep -q "cib-reporting: 15000 rows" "$scratch/embedded.out"
# A result in several batches: every row is shown, not the first batch's.
example embedded risk-officer "SELECT lob, count(*) AS n FROM payments.transactions GROUP BY lob"
grep -q "risk-officer: 3 rows" "$scratch/embedded.out"
[ "$(grep -cE '^\| (AWM|CCB|CIB) ' "$scratch/embedded.out")" = 3 ]
example own_mesh
grep -q "emea-analyst: 2 rows" "$scratch/own_mesh.out"
grep -q "controller: 4 rows" "$scratch/own_mesh.out"
grep -q "permission denied" "$scratch/own_mesh.out"
example custom_store
grep -q "custom store: 2 audit records" "$scratch/custom_store.out"
example serve_tls_jwt
grep -q "forged token" "$scratch/serve_tls_jwt.out"

step "python environment"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
# InfluxData's SQLAlchemy dialect needs SQLAlchemy 1.4; the main venv has 2: a venv of its own.
venv_dbapi="${MESHGATE_VENV_FLIGHTSQL_DBAPI:-$HOME/.cache/meshgate/venv-flightsql-dbapi}"
if [ ! -x "$venv_dbapi/bin/python" ]; then
    python3 -m venv "$venv_dbapi"
fi
"$venv_dbapi/bin/pip" install --quiet --disable-pip-version-check -r tests/python/flightsql_dbapi/requirements.txt

step "python flight sql tests"
# Same target selection as the test build (dev-dependency features unify the same way),
# so this reuses the binary the integration tests were built with instead of rebuilding.
cargo build --quiet --locked --workspace --tests --bins
# The console's browser tests refresh the README's screenshots (docs/screenshots).
MESHGATE_BIN="$CARGO_TARGET_DIR/debug/meshgate" MESHGATE_SCREENSHOTS=docs/screenshots \
    "$venv/bin/pytest" -q -rs tests/python --ignore=tests/python/flightsql_dbapi
MESHGATE_BIN="$CARGO_TARGET_DIR/debug/meshgate" "$venv_dbapi/bin/pytest" -q tests/python/flightsql_dbapi

step "benchmark harness: smoke run (its lints and unit tests ran with the workspace)"
# A CI-sized run of every configuration (tiny TPC-H, one run each, debug build) so that the
# harness cannot rot; its report goes to the scratch directory, never benches/RESULTS.md.
MESHGATE_VENV="$venv" benches/run.sh --smoke --data-dir "$scratch/bench"

step "all tests passed"
