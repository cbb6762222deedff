#!/usr/bin/env bash
# The benchmarks, side by side in one run (see benches/README.md):
#
#   benches/run.sh            # TPC-H SF1 and everything else: benches/RESULTS.md + results.json
#   benches/run.sh --smoke    # tiny scale, one run, debug build: checks the harness end to end
#
# Other options go to the harness (`--scale 10`, `--iterations 5`, `--queries q01,q06`, ...;
# `--help` lists them). Builds are reused from $CARGO_TARGET_DIR (default
# ~/.cache/meshgate/target), the Python peers' venv from ~/.cache/meshgate/venv, the
# generated data from ~/.cache/meshgate/bench.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/meshgate/target}"
venv="${MESHGATE_VENV:-$HOME/.cache/meshgate/venv}"

profile=release
for arg in "$@"; do
    if [ "$arg" = "--smoke" ]; then profile=dev; fi
done

. tests/need-protoc.sh

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r benches/requirements.txt

dir=release
if [ "$profile" = dev ]; then
    # The test command's selection (every package, its tests and binaries): the same features
    # for every crate, so a smoke run after `cargo test --workspace` compiles only the harness.
    cargo build --quiet --locked --workspace --tests --bins
    dir=debug
else
    cargo build --quiet --locked --release -p meshgate-bench --bin meshgate-bench
fi
exec "$CARGO_TARGET_DIR/$dir/meshgate-bench" --python "$venv/bin/python" "$@"
