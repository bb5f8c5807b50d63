"""GROUP BY at scale: Sluice against DuckDB, chDB and Polars (issue 17).

Run through benches/groups.sh, which makes the venv. One table, generated once
into Parquet with numpy and loaded by each engine into its own storage (Sluice
through `sluice import`):

    ts      TIMESTAMP  in order, 30 days
    k       BIGINT     10,000,000 values, a quadratic hash of the row number
    v       BIGINT     1,000,000 values, another hash
    amount  BIGINT     500 .. 10,499 (cents: sums are exact in every engine)

The queries group by `k % N` for N from 100 to 10,000,000 and keep the
largest groups (a dashboard's "top N"), count distinct values of `v` per
`k % 100`, and rank a million groups by a sum. Each engine runs in a process
of its own, so its peak resident memory is its own: Sluice as a server (its
VmHWM), each peer as a child of this script. Every engine's answers must be
equal before any time is reported.

Usage: python groups.py SLUICE_BINARY ROWS WORK_DIR
       python groups.py --peer ENGINE PARQUET   (what the script runs per peer)
"""

import json
import os
import resource
import socket
import subprocess
import sys
import time

RUNS = 3
P = 2147483647
SALTS = [(48271, 69621, 12345), (16807, 40692, 54321), (39373, 44488, 99991)]
START_MICROS = 1_717_200_000_000_000  # 2024-06-01
SPAN_MICROS = 30 * 86_400 * 1_000_000
CHUNK = 2_000_000


def mix(g, salt):
    a, b, c = SALTS[salt]
    return (((g * g) % P) * a + g * b + c) % P


def queries():
    """(name, SQL): the same text for every engine."""
    top = "SELECT k % {n} AS g, count(*) AS c, sum(amount) AS s FROM t GROUP BY k % {n} ORDER BY s DESC, g LIMIT {limit}"
    out = [(f"GROUP BY, {n:,} groups, top 5", top.format(n=n, limit=5))
           for n in (100, 10_000, 100_000, 10_000_000)]
    out.insert(3, ("top-10 by sum, 1,000,000 groups", top.format(n=1_000_000, limit=10)))
    out += [
        ("count(DISTINCT), 1k values per key", "SELECT k % 100 AS g, count(DISTINCT v % 1000) AS d FROM t GROUP BY k % 100 ORDER BY d DESC, g LIMIT 5"),
        ("count(DISTINCT), ~1M values per key", "SELECT k % 100 AS g, count(DISTINCT v) AS d FROM t GROUP BY k % 100 ORDER BY d DESC, g LIMIT 5"),
    ]
    return out


def generate(path, rows):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    step = SPAN_MICROS // rows
    writer = None
    for lo in range(0, rows, CHUNK):
        g = np.arange(lo, min(rows, lo + CHUNK), dtype=np.int64)
        part = pa.table({
            "ts": pa.array(START_MICROS + g * step, pa.timestamp("us")),
            "k": pa.array(mix(g, 0) % 10_000_000),
            "v": pa.array(mix(g, 1) % 1_000_000),
            "amount": pa.array(mix(g, 2) % 10_000 + 500),
        })
        if writer is None:
            writer = pq.ParquetWriter(path, part.schema, compression="zstd")
        writer.write_table(part)
    writer.close()


def best_of(run):
    """Best time of RUNS after one warm-up, in ms, and the answer."""
    answer = run()
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        run()
        times.append((time.perf_counter() - t) * 1000)
    return min(times), [tuple(int(x) for x in row) for row in answer]


def peer(engine, parquet):
    """Loads `parquet` into `engine`'s own storage, runs every query and
    prints one JSON line per query, then its peak resident memory."""
    work = os.path.dirname(parquet)
    if engine == "duckdb":
        import duckdb
        con = duckdb.connect(os.path.join(work, "duck.db"))
        con.execute(f"CREATE OR REPLACE TABLE t AS SELECT * FROM read_parquet('{parquet}')")
        run = lambda sql: con.execute(sql).fetchall()
    elif engine == "chdb":
        import chdb.session
        ch = chdb.session.Session(os.path.join(work, "chdb"))
        ch.query("DROP TABLE IF EXISTS t")
        ch.query("CREATE TABLE t (ts DateTime64(6, 'UTC'), k Int64, v Int64, amount Int64) "
                 "ENGINE = MergeTree ORDER BY ts")
        ch.query(f"INSERT INTO t SELECT * FROM file('{parquet}', Parquet)")
        ch.query("OPTIMIZE TABLE t FINAL")
        run = lambda sql: [tuple(r.values()) for r in ch.query(sql, "ArrowTable").to_pylist()]
    elif engine == "polars":
        import polars as pl
        ctx = pl.SQLContext(t=pl.read_parquet(parquet).lazy())
        run = lambda sql: ctx.execute(sql, eager=True).rows()
    else:
        sys.exit(f"unknown engine {engine}")
    for name, sql in queries():
        ms, answer = best_of(lambda: run(sql))
        print(json.dumps({"query": name, "ms": ms, "answer": answer}), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_bytes": peak}), flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid, field):
    """A field of /proc/PID/status (VmRSS, VmHWM) in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def settle(pid, seconds=30):
    """Waits until the server's CPU time stops growing (its seal of an
    import is done), up to `seconds`."""
    def cpu():
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return int(parts[11]) + int(parts[12])
    last = cpu()
    for _ in range(seconds):
        time.sleep(1)
        now = cpu()
        if now - last < 5:
            return
        last = now


def gb(n):
    return f"{n / 2**30:.2f} GB"


def sluice(binary, work, parquet):
    """Loads and queries Sluice; returns {query: (ms, answer)} and memory."""
    data = os.path.join(work, "sluice-data")
    subprocess.run([binary, "sql", "--data-dir", data, "--",
                    "CREATE TABLE t (ts TIMESTAMP, k BIGINT, v BIGINT, amount BIGINT) "
                    "WITH (time_column = 'ts', retention = 'none')"],
                   check=True, stdout=subprocess.DEVNULL)
    t = time.perf_counter()
    subprocess.run([binary, "import", "--data-dir", data, "--table", "t", parquet],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    load_s = time.perf_counter() - t
    load_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    server, conn = serve(binary, data)
    try:
        settle(server.pid)
        steady = proc_status(server.pid, "VmRSS")
        results = {}
        for name, sql in queries():
            results[name] = best_of(lambda: conn.execute(sql).fetchall())
            print(f"sluice: {name}: {results[name][0]:.1f} ms", flush=True)
        memory = {
            "import_s": load_s,
            "import_peak": load_peak,
            "steady": steady,
            "after": proc_status(server.pid, "VmRSS"),
            "peak": proc_status(server.pid, "VmHWM"),
        }
    finally:
        server.terminate()
        server.wait()
    return results, memory


def serve(binary, data, *extra):
    """Starts `sluice serve` on `data`; returns the process and a connection."""
    import psycopg
    port = free_port()
    server = subprocess.Popen([binary, "serve", "--data-dir", data, "--pg-addr",
                               f"127.0.0.1:{port}", "--http-addr", "127.0.0.1:0", *extra],
                              stdout=subprocess.DEVNULL)
    for _ in range(100):
        try:
            return server, psycopg.connect(
                f"host=127.0.0.1 port={port} user=bench dbname=sluice", autocommit=True)
        except psycopg.OperationalError:
            time.sleep(0.1)
    server.terminate()
    sys.exit("sluice did not accept connections")


# Below what the 10M-group query takes at 100M rows (about 1 GB over two
# workers); a smaller run needs less (SPILL_MEMORY=8MB for 2M rows).
SPILL_MEMORY = os.environ.get("SPILL_MEMORY", "512MB")


def sluice_spilling(binary, work, name):
    """The query `name` again on a server whose statement memory its groups
    pass, so it spills to disk; returns (ms, answer) and the server's peak."""
    sql = dict(queries())[name]
    server, conn = serve(binary, os.path.join(work, "sluice-data"),
                         "--statement-memory", SPILL_MEMORY)
    try:
        settle(server.pid)
        result = best_of(lambda: conn.execute(sql).fetchall())
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN ANALYZE " + sql).fetchall())
        if "Aggregate spilled to disk" not in plan:
            sys.exit(f"{name!r} did not spill with statement_memory {SPILL_MEMORY}:\n{plan}")
        return result, proc_status(server.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait()


def main():
    if sys.argv[1] == "--peer":
        return peer(sys.argv[2], sys.argv[3])
    binary, rows, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.makedirs(work, exist_ok=True)
    parquet = os.path.join(work, "t.parquet")
    t = time.perf_counter()
    generate(parquet, rows)
    print(f"parquet: {rows:,} rows in {time.perf_counter() - t:.1f} s", flush=True)

    results, memory = sluice(binary, work, parquet)
    spill_name = "GROUP BY, 10,000,000 groups, top 5"
    spilled, spill_peak = sluice_spilling(binary, work, spill_name)
    if spilled[1] != results[spill_name][1]:
        sys.exit(f"the spilled answer differs: {spilled[1]} against {results[spill_name][1]}")
    engines = {"Sluice": results}
    peaks = {"Sluice": memory["peak"]}
    for engine, label in [("duckdb", "DuckDB"), ("chdb", "chDB"), ("polars", "Polars")]:
        out = subprocess.run([sys.executable, __file__, "--peer", engine, parquet],
                             check=True, capture_output=True, text=True).stdout
        mine = {}
        for line in out.splitlines():
            row = json.loads(line)
            if "peak_bytes" in row:
                peaks[label] = row["peak_bytes"]
            else:
                mine[row["query"]] = (row["ms"], [tuple(r) for r in row["answer"]])
        engines[label] = mine
        print(f"{label}: done", flush=True)

    peers = ["DuckDB", "chDB", "Polars"]
    print()
    print("| query | Sluice ms | " + " | ".join(f"{p} ms" for p in peers) + " | Sluice / best peer |")
    print("|---|---:|" + "---:|" * len(peers) + "---:|")
    for name, _ in queries():
        answers = {e: engines[e][name][1] for e in engines}
        if len({json.dumps(a) for a in answers.values()}) != 1:
            sys.exit(f"answers differ for {name!r}: {answers}")
        ms = {e: engines[e][name][0] for e in engines}
        best = min(ms[p] for p in peers)
        cells = " | ".join(f"{ms[p]:.0f}" for p in peers)
        print(f"| {name} | {ms['Sluice']:.0f} | {cells} | {ms['Sluice'] / best:.2f}x |")
    print()
    print("| engine | peak resident memory |")
    print("|---|---:|")
    for e, peak in peaks.items():
        print(f"| {e} | {gb(peak)} |")
    print()
    print(f"Sluice: import {memory['import_s']:.0f} s, its peak {gb(memory['import_peak'])}; "
          f"server steady {gb(memory['steady'])}, after the queries {gb(memory['after'])}, "
          f"peak {gb(memory['peak'])}")
    print(f"Sluice with statement_memory {SPILL_MEMORY}: {spill_name}: {spilled[0]:.0f} ms "
          f"through disk (in memory {results[spill_name][0]:.0f} ms), same answer; "
          f"that server's peak {gb(spill_peak)}")


if __name__ == "__main__":
    main()
