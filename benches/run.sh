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

# datafusion-flight-sql-server pulls in Substrait, whose build generates code with protoc.
if ! command -v protoc >/dev/null 2>&1; then
    echo "benches/run.sh: installing protoc (Debian package protobuf-compiler)" >&2
    sudo_if_needed=""
    if [ "$(id -u)" != 0 ]; then sudo_if_needed=sudo; fi
    $sudo_if_needed apt-get install -y -q protobuf-compiler >/dev/null ||
        { $sudo_if_needed apt-get update -q >/dev/null && $sudo_if_needed apt-get install -y -q protobuf-compiler >/dev/null; }
fi

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r benches/requirements.txt

cargo build --quiet --locked --profile "$profile" --manifest-path benches/Cargo.toml --bin meshgate-bench
dir=release
if [ "$profile" = dev ]; then dir=debug; fi
exec "$CARGO_TARGET_DIR/$dir/meshgate-bench" --python "$venv/bin/python" "$@"
