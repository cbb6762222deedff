"""The engines a user might pick instead of meshgate, on the same local Parquet files:
DuckDB, DataFusion-Python and Polars. Called by `meshgate-bench`, which compares their
answers with embedded DataFusion's before reporting their times.

Each engine registers the eight TPC-H tables from `--tables/<table>/` and runs the same
query texts (with the `tpch.` schema prefix removed). A query an engine cannot run is
recorded with its error, not skipped silently.
"""

import argparse
import datetime
import decimal
import json
import pathlib
import time

TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]


def cell(value):
    """A value as the harness compares it: numbers as floats, dates as ISO text."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, decimal.Decimal)):
        return float(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return str(value)


def rows_of(table):
    """Rows of a pyarrow table, cell by cell."""
    columns = [column.to_pylist() for column in table.columns]
    return [[cell(c[i]) for c in columns] for i in range(table.num_rows)]


def duckdb_engine(tables):
    import duckdb

    con = duckdb.connect()
    for t in TABLES:
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{tables}/{t}/*.parquet')")
    return duckdb.__version__, lambda sql: con.sql(sql).to_arrow_table()


def datafusion_engine(tables):
    import datafusion

    ctx = datafusion.SessionContext()
    for t in TABLES:
        ctx.register_parquet(t, f"{tables}/{t}/")
    return datafusion.__version__, lambda sql: ctx.sql(sql).to_arrow_table()


def polars_engine(tables):
    import polars as pl

    frames = {t: pl.scan_parquet(f"{tables}/{t}/*.parquet") for t in TABLES}
    ctx = pl.SQLContext(frames=frames)
    return pl.__version__, lambda sql: ctx.execute(sql, eager=True).to_arrow()


ENGINES = {
    "duckdb": duckdb_engine,
    "datafusion-python": datafusion_engine,
    "polars": polars_engine,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tables", required=True)
    parser.add_argument("--queries", required=True)
    parser.add_argument("--only", default="")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    only = [q for q in args.only.split(",") if q]
    queries = {}
    for path in sorted(pathlib.Path(args.queries).glob("q*.sql")):
        if only and path.stem not in only:
            continue
        queries[path.stem] = path.read_text().replace("tpch.", "")

    out = {"engines": {}}
    for name, make in ENGINES.items():
        version, run = make(args.tables)
        results = {}
        for query, sql in queries.items():
            result = {"ms": [], "rows": None, "error": None}
            try:
                for _ in range(args.warmup):
                    run(sql)
                for i in range(args.iterations):
                    started = time.perf_counter()
                    table = run(sql)
                    result["ms"].append((time.perf_counter() - started) * 1000.0)
                    if i == 0:
                        result["rows"] = rows_of(table)
            except Exception as error:  # an engine's refusal is a result, reported as such
                result["error"] = f"{type(error).__name__}: {error}"
            results[query] = result
        out["engines"][name] = {"version": version, "queries": results}
    pathlib.Path(args.out).write_text(json.dumps(out))


if __name__ == "__main__":
    main()
