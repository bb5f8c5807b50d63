"""One restaurant's dashboard at scale: Sluice with no table options, Sluice
with a sort key, and PostgreSQL 15 with btree indexes, under pgbench.

Run through benches/point.sh, which builds Sluice and the venv. Steps:

1. DuckDB writes ROWS orders to Parquet: `ts` evenly over the 180 days before
   NOW, `restaurant_id` hashed over 10,000 restaurants, 500 items, five
   statuses, an amount.
2. Sluice loads the file through `sluice import` twice: into a table created
   as a newcomer would (`CREATE TABLE orders (...)`, no options) and into one
   with `time_column = 'ts', sort_key = 'restaurant_id, ts'`. PostgreSQL loads
   it by COPY, with btree indexes on restaurant_id and on ts, then VACUUM
   ANALYZE.
3. The answers of every query for a few restaurants must be equal on the three.
4. Each query runs under pgbench (`-M prepared`, a random restaurant per
   transaction) with 16 and then 100 clients against one server at a time;
   tps from pgbench, p50 and p99 from its per-transaction log.
5. EXPLAIN ANALYZE of the first query on the table with no options, so the
   report shows what each segment did.

Usage: python point.py SLUICE_BINARY WORK_DIR ROWS SECONDS
"""

import os
import re
import shutil
import subprocess
import sys
import time

NOW = "2026-11-30 20:00:00"
RESTAURANTS = 10_000
CLIENTS = [16, 100]

COLUMNS = "ts TIMESTAMP, restaurant_id BIGINT, item TEXT, status TEXT, amount DOUBLE PRECISION"

# The one-restaurant dashboard; `:r` is pgbench's random restaurant.
QUERIES = {
    "top items (the issue's query)":
        "SELECT item, count(*), sum(amount) FROM orders WHERE restaurant_id = :r "
        "GROUP BY item ORDER BY 2 DESC, 1 LIMIT 5",
    "funnel, last day":
        "SELECT status, count(*) FROM orders WHERE restaurant_id = :r "
        f"AND ts >= TIMESTAMP '{NOW}' - INTERVAL '1 day' GROUP BY status ORDER BY status",
    "top items, last hour":
        "SELECT item, count(*), sum(amount) FROM orders WHERE restaurant_id = :r "
        f"AND ts >= TIMESTAMP '{NOW}' - INTERVAL '1 hour' GROUP BY item ORDER BY 2 DESC, 1 LIMIT 5",
    "daily sales, 180 days":
        "SELECT date_trunc('day', ts) AS day, count(*), sum(amount) FROM orders "
        "WHERE restaurant_id = :r GROUP BY 1 ORDER BY 1",
    "sales today":
        "SELECT count(*), sum(amount) FROM orders WHERE restaurant_id = :r "
        f"AND ts >= date_trunc('day', TIMESTAMP '{NOW}')",
}

# The helpers the dashboards comparison already has: children stopped when
# the run ends, a free port, a connection that waits for the server, and
# waiting until a server is idle.
from compare import CHILDREN, connect, free_port, sh, spawn, start_cluster, wait_idle  # noqa: E402


def stop(child):
    child.terminate()
    try:
        child.wait(timeout=60)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def generate(path, rows):
    import duckdb
    secs = 180 * 86400
    duckdb.connect().execute(f"""
        COPY (
          SELECT TIMESTAMP '{NOW}' - INTERVAL 180 DAY
                   + to_microseconds(g * {secs * 1_000_000 // rows}) AS ts,
                 CAST(hash(g * 7) % {RESTAURANTS} + 1 AS BIGINT) AS restaurant_id,
                 'item-' || CAST(hash(g * 13) % 500 AS VARCHAR) AS item,
                 ['NEW', 'CONFIRMED', 'IN_KITCHEN', 'READY_FOR_PICKUP', 'DELIVERED',
                  'DELIVERED', 'DELIVERED', 'DELIVERED'][CAST(hash(g * 3) % 8 + 1 AS INTEGER)] AS status,
                 CAST(hash(g * 5) % 5000 AS DOUBLE) / 100 + 5 AS amount
          FROM range({rows}) t(g)
        ) TO '{path}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1000000)
    """)


def load_sluice(binary, data, parquet, options):
    sh(binary, "sql", "--data-dir", data, "--",
       f"CREATE TABLE orders ({COLUMNS}){options}", stdout=subprocess.DEVNULL)
    t = time.perf_counter()
    sh(binary, "import", "--data-dir", data, "--table", "orders", parquet,
       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def start_sluice(binary, data):
    port = free_port()
    proc = spawn([binary, "serve", "--data-dir", data, "--pg-addr", f"127.0.0.1:{port}",
                  "--http-addr", "127.0.0.1:0"], stdout=subprocess.DEVNULL)
    conn = connect(port, "sluice")
    wait_idle(proc.pid, "Sluice")
    return proc, port, conn, "sluice"


def start_postgres(work, parquet):
    import duckdb
    proc, port, _, conn = start_cluster(work, {
        "shared_buffers": "4GB", "work_mem": "64MB", "max_connections": 120})
    conn.execute(f"CREATE TABLE orders ({COLUMNS})")
    csv = os.path.join(work, "orders.csv")
    t = time.perf_counter()
    duckdb.connect().execute(f"COPY (SELECT * FROM read_parquet('{parquet}')) TO '{csv}' (HEADER false)")
    with open(csv, "rb") as f, conn.cursor().copy("COPY orders FROM STDIN (FORMAT csv)") as copy:
        while chunk := f.read(1 << 20):
            copy.write(chunk)
    os.remove(csv)
    conn.execute("CREATE INDEX ON orders (restaurant_id)")
    conn.execute("CREATE INDEX ON orders (ts)")
    conn.execute("VACUUM ANALYZE orders")
    load = time.perf_counter() - t
    wait_idle(proc.pid, "PostgreSQL")
    return proc, port, conn, "postgres", load


def answers(conn):
    out = {}
    for name, sql in QUERIES.items():
        for r in (1, 77, 4242, RESTAURANTS):
            rows = conn.execute(sql.replace(":r", str(r))).fetchall()
            out[(name, r)] = [tuple(round(v, 2) if isinstance(v, float) else v for v in row)
                              for row in rows]
    return out


def pgbench(port, user, sql, clients, seconds, work):
    script = os.path.join(work, "q.sql")
    with open(script, "w") as f:
        f.write(f"\\set r random(1, {RESTAURANTS})\n{sql};\n")
    logs = os.path.join(work, "pgbench-log")
    shutil.rmtree(logs, ignore_errors=True)
    os.makedirs(logs)
    out = subprocess.run(["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", "2",
                          "-T", str(seconds), "-h", "127.0.0.1", "-p", str(port), "-U", user,
                          "--log", "--log-prefix", os.path.join(logs, "tx"), "-f", script, user],
                         capture_output=True, text=True, check=False, cwd=work)
    tps = re.search(r"tps = ([\d.]+)", out.stdout)
    if not tps or "failed" in out.stdout and re.search(r"failed: [1-9]", out.stdout):
        return {"error": (out.stderr or out.stdout).strip()[-300:]}
    latencies = []
    for name in os.listdir(logs):
        with open(os.path.join(logs, name)) as f:
            latencies += [int(line.split()[2]) for line in f if line.strip()]
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] / 1000

    return {"tps": float(tps.group(1)), "p50": pct(0.50), "p99": pct(0.99)}


def bench(label, server, seconds, work, results):
    proc, port, conn, user = server[:4]
    for name, sql in QUERIES.items():
        for clients in CLIENTS:
            r = pgbench(port, user, sql, clients, seconds, work)
            results[(label, name, clients)] = r
            shown = r.get("error") or f"{r['tps']:,.0f} tps, p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms"
            print(f"{label} | {name} | {clients} clients: {shown}", flush=True)


def cell(r):
    if not r or "error" in r:
        return "failed"
    return f"{r['tps']:,.0f} / {r['p50']:.1f} / {r['p99']:.1f}"


def main():
    binary, work, rows, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    parquet = os.path.join(work, "orders.parquet")
    t = time.perf_counter()
    generate(parquet, rows)
    print(f"generated {rows:,} rows in {time.perf_counter() - t:.0f} s", flush=True)

    setups = [("Sluice, no options", "plain", ""),
              ("Sluice, sort key", "sorted",
               " WITH (time_column = 'ts', retention = 'none', sort_key = 'restaurant_id, ts')")]
    loads, results, answer_sets = {}, {}, {}
    for label, dirname, options in setups:
        data = os.path.join(work, dirname)
        loads[label] = load_sluice(binary, data, parquet, options)
        print(f"{label}: imported in {loads[label]:.1f} s", flush=True)
        server = start_sluice(binary, data)
        answer_sets[label] = answers(server[2])
        if dirname == "plain":
            sql = QUERIES["top items (the issue's query)"].replace(":r", "4242")
            plan = server[2].execute(f"EXPLAIN ANALYZE {sql}").fetchall()
            explain = "\n".join(r[0] for r in plan)
        bench(label, server, seconds, work, results)
        server[2].close()
        stop(server[0])
    pg = start_postgres(work, parquet)
    loads["PostgreSQL 15"] = pg[4]
    print(f"PostgreSQL: loaded and indexed in {pg[4]:.1f} s", flush=True)
    answer_sets["PostgreSQL 15"] = answers(pg[2])
    bench("PostgreSQL 15", pg, seconds, work, results)
    pg[2].close()
    stop(pg[0])

    differing = [label for label, a in answer_sets.items() if a != answer_sets["PostgreSQL 15"]]
    if differing:
        for label in differing:
            for key, want in answer_sets["PostgreSQL 15"].items():
                if answer_sets[label][key] != want:
                    print(f"{label} differs on {key}: {answer_sets[label][key]} vs {want}")
        sys.exit("answers differ")
    print("answers: equal on all three", flush=True)

    labels = [s[0] for s in setups] + ["PostgreSQL 15"]
    print()
    print(f"{rows:,} rows; cells are tps / p50 ms / p99 ms (pgbench -M prepared, {seconds} s each)")
    print()
    print("| query | clients | " + " | ".join(labels) + " | no options / PostgreSQL |")
    print("|---|---:|" + "---:|" * (len(labels) + 1))
    for name in QUERIES:
        for clients in CLIENTS:
            cells = [cell(results.get((label, name, clients))) for label in labels]
            plain = results.get((labels[0], name, clients), {})
            pg_r = results.get(("PostgreSQL 15", name, clients), {})
            ratio = (f"{plain['tps'] / pg_r['tps']:.1f}x"
                     if "tps" in plain and "tps" in pg_r else "")
            print(f"| {name} | {clients} | " + " | ".join(cells) + f" | {ratio} |")
    print()
    print("| setup | load s |")
    print("|---|---:|")
    for label in labels:
        print(f"| {label} | {loads[label]:.1f} |")
    print()
    print("EXPLAIN ANALYZE (no options, restaurant 4242):")
    print(explain)


if __name__ == "__main__":
    try:
        main()
    finally:
        for child in CHILDREN:
            if child.poll() is None:
                child.kill()
