#!/usr/bin/env python3
"""CPU per query by component, for the concurrency part's servers loaded one at a time.

Reads `perf script` output of runs recorded with call graphs (see benches/README.md,
"Where the concurrency part's time goes") and the harness's JSON of the same runs, and prints
a Markdown table: milliseconds of CPU per query in each component, per server, and the
difference. A sample goes to the first component (in the order below) that any frame of its
stack names, so a statement's planning that reads the store counts as store, and the sign-ins
before the timed window count apart. Samples of the harness's main thread (data, set-up) are
left out. Only the last `--seconds` of each recording count (the last load level, which
ends the run; its last second is left out too), against that level's queries per second:
the set-up before the load would otherwise be spread over the queries.

    perf script -i meshgate.data --no-inline -F comm,time,ip,sym > /tmp/mg.script
    python3 benches/profile.py --frequency 149 --seconds 8 \
        meshgate=/tmp/mg.script:/tmp/mg.json peer=/tmp/pe.script:/tmp/pe.json
"""

import argparse
import collections
import json
import re

# (component, a substring of a frame's symbol), first match wins.
COMPONENTS = [
    ("sign-in (before the timed window)", "verify_password"),
    ("governance store (SQLite, sqlx)", "sqlite3"),
    ("governance store (SQLite, sqlx)", "sqlx_"),
    ("governance store (SQLite, sqlx)", "meshgate_governance"),
    ("audit record", "meshgate_engine::audit"),
    ("scan planning", "ProtectedTable as datafusion_session::table::TableProvider>::scan"),
    ("scan planning", "ListingTable as datafusion_session::table::TableProvider>::scan"),
    ("physical planning", "create_physical_plan"),
    ("SQL to logical plan", "SqlToRel"),
    ("SQL to logical plan", "DFParser"),
    ("logical optimizer", "SessionState::optimize"),
    ("policy, session state", "meshgate_policy"),
    ("policy, session state", "meshgate_engine::scope"),
    ("policy, session state", "current_policies"),
    ("policy, session state", "meshgate_engine::plan::task_context"),
    ("policy, session state", "meshgate_engine::plan::state"),
    ("execution (scan, decode, filter)", "FileStream"),
    ("execution (scan, decode, filter)", "parquet::"),
    ("execution (scan, decode, filter)", "ParquetMorsel"),
    ("execution (scan, decode, filter)", "ParquetOpen"),
    ("execution (scan, decode, filter)", "ExecutionPlan>::execute"),
    ("Flight encoding", "FlightDataEncoder"),
    ("Flight encoding", "EncodeBody"),
    ("Flight SQL service", "meshgate_flight"),
    ("Flight SQL service", "datafusion_flight_sql_server"),
    ("the load's clients", "meshgate_bench::"),
    ("HTTP/2, gRPC", "h2::"),
    ("HTTP/2, gRPC", "hyper"),
    ("HTTP/2, gRPC", "tonic"),
    ("kernel scheduling", "schedule"),
    ("tokio", "tokio::runtime"),
]

FRAME = re.compile(r"^\s*[0-9a-f]+\s+")
HEADER = re.compile(r"^(.*?)\s+([0-9]+\.[0-9]+):\s*$")


def samples(path):
    """Each sample's thread name, time (seconds) and frames (innermost first)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for block in f.read().split("\n\n"):
            lines = block.strip().split("\n")
            if len(lines) < 2:
                continue
            header = HEADER.match(lines[0].strip())
            if header is None:
                raise SystemExit(f"{path}: no sample time; run perf script with -F comm,time,ip,sym")
            frames = [FRAME.sub("", line).strip() for line in lines[1:]]
            yield header.group(1).strip(), float(header.group(2)), frames


def component(frames):
    for name, marker in COMPONENTS:
        if any(marker in frame for frame in frames):
            return name
    return "other"


def per_component(path, seconds):
    """Samples per component in the window of `seconds` that ends one second before the
    recording does."""
    every = [s for s in samples(path) if not s[0].startswith("meshgate-bench")]
    end = max(time for _, time, _ in every) - 1.0
    counts = collections.Counter()
    for _, time, frames in every:
        if end - seconds <= time < end:
            counts[component(frames)] += 1
    return counts


def last_level_rate(path):
    """Queries per second of the run's last load level (one server per run)."""
    with open(path, encoding="utf-8") as f:
        loads = json.load(f)["concurrency"]
    (runs,) = loads.values()
    return runs[-1]["queries_per_second"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frequency", type=float, required=True, help="perf record -F")
    parser.add_argument("--seconds", type=float, default=8.0, help="window at the end")
    parser.add_argument("runs", nargs=2, help="name=perf-script-output:harness-json")
    args = parser.parse_args()
    columns = []
    for run in args.runs:
        name, paths = run.split("=", 1)
        script, report = paths.rsplit(":", 1)
        n = last_level_rate(report) * args.seconds
        counts = per_component(script, args.seconds)
        ms = {k: v / args.frequency / n * 1000 for k, v in counts.items()}
        columns.append((name, ms))
    (a, ma), (b, mb) = columns
    names = sorted(set(ma) | set(mb), key=lambda k: -(ma.get(k, 0) - mb.get(k, 0)))
    print(f"| component | {a} ms/query | {b} ms/query | difference |")
    print("|---|---|---|---|")
    for k in names:
        x, y = ma.get(k, 0.0), mb.get(k, 0.0)
        print(f"| {k} | {x:.3f} | {y:.3f} | {x - y:+.3f} |")
    timed = [k for k in names if not k.startswith("sign-in")]
    x, y = sum(ma.get(k, 0.0) for k in timed), sum(mb.get(k, 0.0) for k in timed)
    print(f"| **total (without sign-ins)** | {x:.3f} | {y:.3f} | {x - y:+.3f} ({x / y:.3f}×) |")


if __name__ == "__main__":
    main()
