"""The cost of sharing state: audit writes on PostgreSQL against SQLite, and the throughput of
three replicas on one PostgreSQL store against one.

    benches/replicas.py --bin target/release/meshgate [--rounds 5] [--seconds 10]

Everything runs here, side by side and interleaved over rounds (SQLite, PostgreSQL,
SQLite, ...; one replica, three, one, ...), reporting the median and the spread (min-max):

- audit write: one client runs the same small query again and again on one `meshgate serve`;
  the gateway's own histogram (`meshgate_audit_write_seconds`, phase `start`: the durable
  record written before the query runs) gives the mean write time, and the client the mean
  query latency;
- throughput: `--clients` concurrent clients for `--seconds`, spread over the replicas, each
  running the query in a loop; queries per second over all of them.

PostgreSQL is a cluster of this script's own (initdb under a temporary directory, default
settings, fsync on); SQLite is the embedded default (WAL, synchronous = FULL). Both on the
same disk. The reference mesh's files come from a `meshgate demo` data directory.
"""

import argparse
import os
import pathlib
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

import adbc_driver_flightsql.dbapi as flightsql

REPO = pathlib.Path(__file__).resolve().parents[1]
QUERY = "SELECT count(*) AS n FROM reference.counterparties WHERE lob = 'CIB'"
PASSWORD = "bench-store-password"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin():
    if os.environ.get("MESHGATE_PG_BIN"):
        return pathlib.Path(os.environ["MESHGATE_PG_BIN"])
    versions = sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not versions:
        raise SystemExit("PostgreSQL's server binaries are not installed (apt-get install postgresql)")
    return versions[-1]


class Postgres:
    def __init__(self, root):
        self.root, self.bin, self.port = root, pg_bin(), free_port()
        self.run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        (root / "pw").write_text(PASSWORD)
        if self.run_as:
            subprocess.run(["chown", "-R", "postgres", str(root)], check=True)
        subprocess.run(self.run_as + [str(self.bin / "initdb"), "-D", str(root / "data"), "-U", "meshgate",
                        "--auth-host=scram-sha-256", "--auth-local=trust", f"--pwfile={root / 'pw'}"],
                       check=True, capture_output=True)
        subprocess.run(self.run_as + [str(self.bin / "pg_ctl"), "-D", str(root / "data"), "-w", "-l",
                        str(root / "log"), "-o", f"-p {self.port} -k {root} -c listen_addresses=127.0.0.1",
                        "start"], check=True, capture_output=True)
        subprocess.run([str(self.bin / "psql"), "-h", str(root), "-p", str(self.port), "-U", "meshgate",
                        "-d", "postgres", "-c", "CREATE DATABASE meshgate"], check=True, capture_output=True)

    def reset(self):
        subprocess.run([str(self.bin / "psql"), "-h", str(self.root), "-p", str(self.port), "-U", "meshgate",
                        "-d", "meshgate", "-c",
                        "DROP SCHEMA public CASCADE; CREATE SCHEMA public;"], check=True, capture_output=True)

    def stop(self):
        subprocess.run(self.run_as + [str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast",
                        "stop"], capture_output=True)


def write_config(dir, lake, name, state, postgres):
    store = f'\n[store]\npassword_env = "MESHGATE_BENCH_STORE_PASSWORD"\n' if postgres else ""
    path = dir / f"{name}.toml"
    path.write_text(
        f'products = "{REPO}/products"\npolicies = "{REPO}/policies"\nusers = "{REPO}/policies/users.toml"\n'
        f'master_key_file = "master.key"\nstate = "{state}"\nreplica = "{name}"\n'
        f'[http]\nlisten = "127.0.0.1:0"\n{store}'
        f'[storage.default]\nkind = "local"\npath = "{lake}/{{bucket}}"\n'
    )
    return path


class Serve:
    def __init__(self, binary, config):
        env = dict(os.environ, MESHGATE_BENCH_STORE_PASSWORD=PASSWORD)
        self.process = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--config", str(config)],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        self.flight = self.ops = None
        for line in self.process.stdout:
            if m := re.match(r"operations on http://(\S+)", line):
                self.ops = m.group(1)
            if m := re.match(r"listening on (\S+)", line):
                self.flight = m.group(1)
                break
        threading.Thread(target=lambda: [None for _ in self.process.stdout], daemon=True).start()

    def metric(self, name, **labels):
        text = urllib.request.urlopen(f"http://{self.ops}/metrics").read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
                if line[len(name)] in " {":
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


def connect(flight):
    return flightsql.connect(f"grpc://{flight}",
                             db_kwargs={"username": "cib-reporting", "password": "cib-reporting-pw"},
                             autocommit=True)


def audit_round(binary, config, queries):
    serve = Serve(binary, config)
    try:
        with connect(serve.flight) as conn, conn.cursor() as cur:
            for _ in range(20):  # warm up: caches, connections
                cur.execute(QUERY)
                cur.fetchall()
            before_sum = serve.metric("meshgate_audit_write_seconds_sum", phase="start")
            before_n = serve.metric("meshgate_audit_write_seconds_count", phase="start")
            started = time.perf_counter()
            for _ in range(queries):
                cur.execute(QUERY)
                cur.fetchall()
            elapsed = time.perf_counter() - started
        write = (serve.metric("meshgate_audit_write_seconds_sum", phase="start") - before_sum) / \
                (serve.metric("meshgate_audit_write_seconds_count", phase="start") - before_n)
        return write * 1000, elapsed / queries * 1000
    finally:
        serve.stop()


def throughput_round(binary, configs, clients, seconds):
    replicas = [Serve(binary, c) for c in configs]
    try:
        counts = [0] * clients
        stop = threading.Event()

        def client(i):
            with connect(replicas[i % len(replicas)].flight) as conn, conn.cursor() as cur:
                while not stop.is_set():
                    cur.execute(QUERY)
                    cur.fetchall()
                    counts[i] += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        time.sleep(2)  # warm up
        start_count, started = sum(counts), time.perf_counter()
        time.sleep(seconds)
        done, elapsed = sum(counts) - start_count, time.perf_counter() - started
        stop.set()
        for t in threads:
            t.join()
        return done / elapsed
    finally:
        for r in replicas:
            r.stop()


def summary(values):
    return f"{statistics.median(values):8.2f} (min {min(values):.2f}, max {max(values):.2f})"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=str(REPO / "target/release/meshgate"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()

    work = pathlib.Path(tempfile.mkdtemp(prefix="meshgate-replicas-"))
    os.chmod(work, 0o755)
    data = work / "mesh"
    demo = subprocess.Popen([args.bin, "demo", "--listen", "127.0.0.1:0", "--http", "off", "--data-dir", str(data)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in demo.stdout:
        if line.startswith("listening on"):
            break
    demo.terminate()
    demo.wait()
    (work / "master.key").write_text("ab" * 32)
    pg_root = work / "pg"
    pg_root.mkdir()
    pg = Postgres(pg_root)
    try:
        url = f"postgres://meshgate@127.0.0.1:{pg.port}/meshgate"
        lake = data / "s3"
        sqlite = write_config(work, lake, "sqlite", str(work / "state" / "meshgate.db"), False)
        on_pg = [write_config(work, lake, n, url, True) for n in ["a", "b", "c"]]

        writes = {"sqlite": [], "postgres": []}
        latency = {"sqlite": [], "postgres": []}
        throughput = {"1 replica": [], "3 replicas": []}
        for r in range(args.rounds):
            for name, config in [("sqlite", sqlite), ("postgres", on_pg[0])]:
                w, l = audit_round(args.bin, config, args.queries)
                writes[name].append(w)
                latency[name].append(l)
            for name, configs in [("1 replica", on_pg[:1]), ("3 replicas", on_pg)]:
                throughput[name].append(throughput_round(args.bin, configs, args.clients, args.seconds))
            print(f"round {r + 1}: audit write ms {writes['sqlite'][-1]:.2f} / {writes['postgres'][-1]:.2f}, "
                  f"q/s {throughput['1 replica'][-1]:.1f} / {throughput['3 replicas'][-1]:.1f}", flush=True)

        print(f"\nbinary: {args.bin}; {os.cpu_count()} cores; {args.rounds} rounds, interleaved")
        print(f"query: {QUERY}")
        for name in writes:
            print(f"audit write before the query runs, {name:8}: {summary(writes[name])} ms;"
                  f" query latency {summary(latency[name])} ms")
        ratio = [p / s for p, s in zip(writes["postgres"], writes["sqlite"])]
        print(f"audit write, PostgreSQL / SQLite: {summary(ratio)}")
        for name in throughput:
            print(f"throughput, {name:10} ({args.clients} clients): {summary(throughput[name])} queries/s")
        ratio = [t / o for t, o in zip(throughput["3 replicas"], throughput["1 replica"])]
        print(f"throughput, 3 replicas / 1: {summary(ratio)}")
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
