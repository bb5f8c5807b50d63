"""The two dashboards side by side: Sluice, DuckDB, chDB, Polars, DataFusion and
PostgreSQL 15 on the same generated rows and the same dashboard queries.

Run through benches/compare.sh, which builds Sluice and the venv. Steps:

1. `sluice gen` makes both workloads for a fixed "now": the restaurant portal's
   messages (JSON lines, for Kafka) and tables (Parquet, orders merged as the
   partial upsert merges them), and the streaming board's plays (1% sent twice).
2. Sluice loads them twice: through Kafka (a tansu broker; the tables of
   examples/dashboards/schema.sql with their upsert and dedup settings) and
   through `sluice import` (the same tables without their Kafka line). The
   Kafka-loaded server answers the queries.
3. Each peer loads the Parquet tables (plays deduplicated once, by DuckDB,
   since none of them deduplicates on ingest) in its own process, so its peak
   memory is its own: DuckDB and chDB into their native storage, Polars and
   DataFusion into memory, PostgreSQL by COPY, with btree indexes on
   restaurant_id and the time column.
4. Every query runs RUNS times per engine after a warm-up; the answers must be
   equal across engines (floats to 2 decimals; each HyperLogLog count within
   5% of the exact one); a differing answer is marked and fails the run.
5. pgbench runs the one-restaurant funnel (prepared, a random restaurant per
   transaction) with 16 clients against Sluice and PostgreSQL.

Usage: python compare.py SLUICE_BINARY WORK_DIR ORDERS PLAYS
       python compare.py --engine NAME WORK_DIR       (one peer, prints JSON)
"""

import datetime as dt
import decimal
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
EXAMPLES = os.path.join(ROOT, "examples", "dashboards")
NOW = "2026-11-30 20:00:00"
RESTAURANTS = 10_000
RESTAURANT = 1  # the busiest (Zipf rank 1)
RUNS = 10
TABLES = ["orders", "order_items", "ratings", "restaurants", "items", "plays"]
TIME_COLUMN = {"orders": "event_time", "order_items": "event_time", "ratings": "event_time",
               "plays": "event_time"}
PG_BIN = "/usr/lib/postgresql/15/bin"


def statement(path):
    """A dashboard file as one statement for a fixed now and restaurant."""
    text = open(os.path.join(EXAMPLES, path)).read()
    text = "\n".join(l for l in text.splitlines() if not l.strip().startswith("--"))
    return text.replace("now()", f"TIMESTAMP '{NOW}'").replace("$1", str(RESTAURANT)).strip()


def queries():
    """(name, file, approximate) for every panel of both dashboards."""
    out = [(f"restaurant: {f[:-4]}", f"restaurant/{f}", False) for f in (
        "funnel.sql", "couriers_waiting.sql", "latest_ratings.sql", "top_items.sql",
        "prep_time.sql", "sales_today.sql", "daily_sales.sql")]
    out += [(f"streaming: {f[:-4]}", f"streaming/{f}", False) for f in (
        "views_per_minute.sql", "top_content.sql", "session_duration.sql")]
    out += [("streaming: dau (exact)", "streaming/dau.sql", False),
            ("streaming: dau (approx)", "streaming/dau.sql", True)]
    return out


def dialect(engine, name, sql, approx):
    """The statement as `engine` takes it: each peer's spelling of what it
    names differently, nothing else changed."""
    if name.startswith("streaming: dau"):
        # Exact and approximate apart, so each is timed on its own.
        keep = "approx_count_distinct(user_id) AS dau" if approx else "count(DISTINCT user_id) AS dau"
        sql = re.sub(r"count\(DISTINCT user_id\) AS dau,\s*approx_count_distinct\(user_id\) AS dau_approx",
                     keep, sql)
    if engine == "datafusion":
        sql = sql.replace("approx_count_distinct(", "approx_distinct(")
    if engine == "postgres":
        # PostgreSQL has no HyperLogLog: its exact count stands in.
        sql = sql.replace("approx_count_distinct(", "count(DISTINCT ")
    if engine == "chdb":
        sql = sql.replace(f"TIMESTAMP '{NOW}'", f"toDateTime64('{NOW}', 6, 'UTC')")
        sql = re.sub(r"interval '(\d+) (\w+?)s?'", lambda m: f"INTERVAL {m.group(1)} {m.group(2).upper()}", sql)
        sql = re.sub(r"extract\(epoch FROM (\w+) - (\w+)\)",
                     r"(toUnixTimestamp64Micro(\1) - toUnixTimestamp64Micro(\2)) / 1e6", sql)
        sql = re.sub(r"percentile_cont\(([\d.]+)\) WITHIN GROUP \(ORDER BY (\w+)\)",
                     r"quantileExactInclusive(\1)(\2)", sql)
        sql = sql.replace("approx_count_distinct(", "uniq(")
        sql = re.sub(r"date_trunc\('(day|minute)', (\w+)\)",
                     lambda m: f"toDateTime64(toStartOf{m.group(1).title()}({m.group(2)}), 6, 'UTC')", sql)
    if engine == "polars":
        sql = re.sub(r"percentile_cont\(([\d.]+)\) WITHIN GROUP \(ORDER BY (\w+)\)",
                     r"quantile_cont(\2, \1)", sql)
        sql = re.sub(r"extract\(epoch FROM (\w+) - (\w+)\)",
                     r"(extract(epoch FROM \1) - extract(epoch FROM \2))", sql)
    return sql


def normalise(rows, approx=False):
    """Answers in a comparable form: numbers to 2 decimals (to 3% for the
    approximate count), times as naive text."""
    out = []
    for row in rows:
        cells = []
        for v in row:
            if isinstance(v, bool):
                cells.append(str(v))
            elif isinstance(v, (int, float, decimal.Decimal)):
                f = float(v)
                if approx and abs(f) >= 100:
                    cells.append(f"~{f:.0f}")
                else:
                    cells.append("0.00" if f == 0 else f"{f:.2f}")
            elif isinstance(v, dt.datetime):
                cells.append(v.replace(tzinfo=None).isoformat(sep=" "))
            elif isinstance(v, dt.date):
                cells.append(dt.datetime(v.year, v.month, v.day).isoformat(sep=" "))
            else:
                cells.append(str(v))
        out.append(tuple(cells))
    return out


def close_enough(a, b):
    """Equal answers; a `~` cell (an approximate count) within 3%."""
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b):
        for x, y in zip(ra, rb):
            if x.startswith("~") or y.startswith("~"):
                fx, fy = float(x.lstrip("~")), float(y.lstrip("~"))
                if abs(fx - fy) > 0.03 * max(abs(fx), abs(fy)):
                    return False
            elif x != y:
                return False
    return True


def timed(run):
    """Median of RUNS after one warm-up, in milliseconds, and the answer."""
    answer = run()
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        run()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), answer


def dir_bytes(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def parquet_files(work):
    files = {t: os.path.join(work, "restaurant-parquet", f"{t}.parquet") for t in TABLES[:5]}
    files["plays"] = os.path.join(work, "plays-dedup.parquet")
    return files


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_idle(pid, what):
    """Until process `pid` uses under 5% of a core over 5 seconds: a server
    still merging segments in the background would be timed while busy."""
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu():
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    deadline = time.time() + 900
    while time.time() < deadline:
        before = cpu()
        time.sleep(5)
        if (cpu() - before) / ticks / 5 < 0.05:
            return
    print(f"warning: {what} still busy after 15 minutes", flush=True)


def peak_mb_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


# ---- peers, each run in its own process -------------------------------------


def run_queries(execute, engine):
    results = {}
    for name, path, approx in queries():
        sql = dialect(engine, name, statement(path), approx)
        try:
            ms, answer = timed(lambda: execute(sql))
            results[name] = {"ms": ms, "answer": normalise(answer, approx)}
        except Exception as e:  # a peer that cannot run a query says so
            results[name] = {"ms": None, "error": str(e).splitlines()[0][:200]}
    return results


def engine_duckdb(work):
    import duckdb
    path = os.path.join(work, "duck.db")
    if os.path.exists(path):
        os.remove(path)
    con = duckdb.connect(path)
    t = time.perf_counter()
    for table, file in parquet_files(work).items():
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_parquet('{file}')")
    con.execute("CHECKPOINT")
    load = time.perf_counter() - t
    results = run_queries(lambda sql: con.execute(sql).fetchall(), "duckdb")
    return {"version": duckdb.__version__, "load_s": load, "bytes": dir_bytes(path), "results": results}


def engine_chdb(work):
    import chdb
    import chdb.session
    path = os.path.join(work, "chdb")
    shutil.rmtree(path, ignore_errors=True)
    ch = chdb.session.Session(path)
    t = time.perf_counter()
    for table, file in parquet_files(work).items():
        key = f"(restaurant_id, {TIME_COLUMN[table]})" if table in ("orders", "order_items", "ratings") \
            else ("event_time" if table == "plays" else "tuple()")
        ch.query(f"CREATE TABLE {table} ENGINE = MergeTree ORDER BY {key} "
                 f"SETTINGS allow_nullable_key = 1 AS SELECT * FROM file('{file}', Parquet)")
        ch.query(f"OPTIMIZE TABLE {table} FINAL")
    load = time.perf_counter() - t

    def execute(sql):
        table = ch.query(sql, "ArrowTable")
        return [tuple(r.values()) for r in table.to_pylist()]

    results = run_queries(execute, "chdb")
    return {"version": chdb.__version__, "load_s": load, "bytes": dir_bytes(path), "results": results}


def engine_polars(work):
    import polars as pl
    t = time.perf_counter()
    frames = {table: pl.read_parquet(file) for table, file in parquet_files(work).items()}
    ctx = pl.SQLContext(frames=frames)
    load = time.perf_counter() - t

    def execute(sql):
        return ctx.execute(sql, eager=True).rows()

    results = run_queries(execute, "polars")
    size = sum(dir_bytes(f) for f in parquet_files(work).values())
    return {"version": pl.__version__, "load_s": load, "bytes": size, "results": results,
            "storage": "in memory (bytes: its Parquet files)"}


def engine_datafusion(work):
    import datafusion
    import pyarrow.parquet as pq
    ctx = datafusion.SessionContext()
    t = time.perf_counter()
    for table, file in parquet_files(work).items():
        data = pq.read_table(file)
        # Two partitions: both cores scan.
        half = (data.num_rows + 1) // 2
        parts = [data.slice(0, half).to_batches(), data.slice(half).to_batches()]
        ctx.register_record_batches(table, [p for p in parts if p])
    load = time.perf_counter() - t

    def execute(sql):
        return [tuple(r.values()) for r in ctx.sql(sql).to_pylist()]

    results = run_queries(execute, "datafusion")
    size = sum(dir_bytes(f) for f in parquet_files(work).values())
    return {"version": datafusion.__version__, "load_s": load, "bytes": size, "results": results,
            "storage": "in memory (bytes: its Parquet files)"}


ENGINES = {"duckdb": engine_duckdb, "chdb": engine_chdb, "polars": engine_polars,
           "datafusion": engine_datafusion}


def engine_main(name, work):
    report = ENGINES[name](work)
    report["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(report))


# ---- servers: Sluice and PostgreSQL ------------------------------------------


def sh(*args, **kwargs):
    return subprocess.run(args, check=True, **kwargs)


def wait_for(check, what, timeout=1800):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.5)
    sys.exit(f"timed out waiting for {what}")


def connect(port, user):
    import psycopg
    # A server opening 10M rows of segments (and their indexes) takes a while.
    for _ in range(1200):
        try:
            return psycopg.connect(f"host=127.0.0.1 port={port} user={user} dbname={user}",
                                   autocommit=True)
        except psycopg.OperationalError:
            time.sleep(0.1)
    sys.exit(f"cannot connect to port {port}")


def schema(brokers=None):
    text = open(os.path.join(EXAMPLES, "schema.sql")).read()
    if brokers:
        return text.replace("localhost:9092", brokers)
    return "\n".join(") WITH (" if l.startswith(") WITH (kafka_brokers") else l for l in text.splitlines())


def counts(conn):
    return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def expected_counts(work):
    import pyarrow.parquet as pq
    return {t: pq.read_metadata(f).num_rows for t, f in parquet_files(work).items()}


CHILDREN = []


def spawn(args, **kwargs):
    """A child process that is stopped when the benchmark ends, however it ends."""
    child = subprocess.Popen(args, **kwargs)
    CHILDREN.append(child)
    return child


def start_sluice(binary, data, port, work):
    # The dimension tables come in with `sluice import --pg`: COPY from a file
    # under the work directory.
    return spawn([binary, "serve", "--data-dir", data, "--pg-addr", f"127.0.0.1:{port}",
                  "--http-addr", "127.0.0.1:0", "--import-dir", work], stdout=subprocess.DEVNULL)


class BrokerLost(Exception):
    """The broker did not deliver every message produced."""


def sluice_through_kafka(binary, work, expected):
    """Loads Sluice from a tansu broker; returns (server, port, load seconds)."""
    tansu = shutil.which("tansu") or os.path.expanduser("~/.cargo/bin/tansu")
    kport = free_port()
    broker = spawn([tansu, "broker", "--listener-url", f"tcp://127.0.0.1:{kport}",
                               "--advertised-listener-url", f"tcp://127.0.0.1:{kport}",
                               "--storage-engine", "memory://tansu/"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    topics = {"orders": 4, "order_items": 2, "ratings": 2, "plays": 4}
    for topic, partitions in topics.items():
        sh(tansu, "topic", "create", topic, "--partitions", str(partitions),
           "--broker", f"tcp://127.0.0.1:{kport}", stdout=subprocess.DEVNULL)
    port = free_port()
    data = os.path.join(work, "sluice-kafka")
    server = start_sluice(binary, data, port, work)
    conn = connect(port, "bench")
    conn.execute(schema(f"127.0.0.1:{kport}"))
    t = time.perf_counter()
    jsons = {"orders": ("restaurant-json/orders.jsonl", "order_id"),
             "order_items": ("restaurant-json/order_items.jsonl", "order_id"),
             "ratings": ("restaurant-json/ratings.jsonl", "order_id"),
             "plays": ("streaming-json/plays.jsonl", "event_id")}
    # One topic at a time: four producers at once outran the in-memory
    # broker, which then lost a few hundred messages of plays (seen twice).
    for topic, (file, key) in jsons.items():
        sh(binary, "produce", "--brokers", f"127.0.0.1:{kport}", "--topic", topic,
           "--file", os.path.join(work, file), "--key-field", key,
           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for table in ("restaurants", "items"):
        sh(binary, "import", "--pg", f"127.0.0.1:{port}", "--table", table,
           parquet_files(work)[table], stdout=subprocess.DEVNULL, env={**os.environ, "PGUSER": "bench"})
    produced = time.perf_counter() - t
    def caught_up():
        have = counts(conn)
        if have == expected:
            return True
        lag = conn.execute("SELECT coalesce(sum(lag), 1), max(last_error) "
                           "FROM sluice.ingestion").fetchone()
        if lag[0] == 0 and lag[1]:
            # Read to the end and still short: the broker lost messages.
            raise BrokerLost(f"Sluice read every partition to its end but holds {have}, "
                             f"not {expected}: {lag[1]}")
        return False

    wait_for(caught_up, "Sluice to read every message")
    load = time.perf_counter() - t
    # Queried once sealed and merged, as a server that has run a while would
    # be: timing it while it merges segments would time the merging.
    wait_for(lambda: conn.execute("SELECT coalesce(sum(rows), 0) FROM sluice.segments "
                                  "WHERE state = 'mutable'").fetchone()[0] == 0, "sealing", 300)
    wait_idle(server.pid, "Sluice")
    segments = conn.execute("SELECT table_name, count(*) FROM sluice.segments WHERE state = 'sealed' "
                            "GROUP BY 1 ORDER BY 1").fetchall()
    print(f"sluice: sealed segments per table once idle: {dict(segments)}", flush=True)
    return server, port, load, produced, data, broker


def sluice_through_import(binary, work):
    data = os.path.join(work, "sluice-import")
    sh(binary, "sql", "--data-dir", data, "--", schema(), stdout=subprocess.DEVNULL)
    t = time.perf_counter()
    for table, file in parquet_files(work).items():
        sh(binary, "import", "--data-dir", data, "--table", table, file, stdout=subprocess.DEVNULL,
           stderr=subprocess.DEVNULL)
    return time.perf_counter() - t, data


def start_cluster(work, settings):
    """A new PostgreSQL 15 cluster in WORK/pg (as the postgres user when run
    as root), started with `settings` (name -> value) on a free port;
    returns (proc, port, data dir, connection)."""
    data = os.path.join(work, "pg")
    shutil.rmtree(data, ignore_errors=True)
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    os.makedirs(data)
    if as_postgres:
        shutil.chown(data, "postgres")
        shutil.chown(work, "postgres")
    sh(*as_postgres, f"{PG_BIN}/initdb", "-D", data, "-U", "postgres", "--auth", "trust",
       stdout=subprocess.DEVNULL)
    port = free_port()
    options = [arg for name, value in settings.items() for arg in ("-c", f"{name}={value}")]
    proc = spawn([*as_postgres, f"{PG_BIN}/postgres", "-D", data, "-p", str(port), "-k", "/tmp",
                  *options, "-c", "listen_addresses=127.0.0.1"],
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port, data, connect(port, "postgres")


def postgres(work):
    """A throwaway PostgreSQL 15 loaded by COPY; returns (proc, port, load s, dir)."""
    import duckdb
    proc, port, data, conn = start_cluster(work, {
        "shared_buffers": "4GB", "work_mem": "256MB", "max_connections": 100,
        "max_parallel_workers_per_gather": 2})
    ddl = re.sub(r"\) WITH \(.*?\);", ");", schema(), flags=re.S)
    conn.execute(ddl)
    csv_dir = os.path.join(work, "csv")
    os.makedirs(csv_dir, exist_ok=True)
    con = duckdb.connect()
    t = time.perf_counter()
    for table, file in parquet_files(work).items():
        csv = os.path.join(csv_dir, f"{table}.csv")
        con.execute(f"COPY (SELECT * FROM read_parquet('{file}')) TO '{csv}' (HEADER false)")
        with open(csv, "rb") as f, conn.cursor().copy(f"COPY {table} FROM STDIN (FORMAT csv)") as copy:
            while chunk := f.read(1 << 20):
                copy.write(chunk)
        if table in TIME_COLUMN:
            conn.execute(f"CREATE INDEX ON {table} (restaurant_id)" if table != "plays" else "SELECT 1")
            conn.execute(f"CREATE INDEX ON {table} ({TIME_COLUMN[table]})")
    conn.execute("CREATE INDEX ON items (item_id)")
    conn.execute("VACUUM ANALYZE")
    load = time.perf_counter() - t
    wait_idle(proc.pid, "PostgreSQL")
    shutil.rmtree(csv_dir)
    return proc, port, load, data, conn


def server_report(conn, engine, load, data_bytes, pid, version):
    """Runs the queries over `conn`; `pid` is the process whose peak memory
    counts (Sluice's server; PostgreSQL's backend serving `conn`)."""
    results = run_queries(lambda sql: conn.execute(sql).fetchall(), engine)
    return {"version": version, "load_s": load, "bytes": data_bytes, "results": results,
            "peak_mb": peak_mb_of(pid)}


def pgbench(port, user, dbname):
    script = statement("restaurant/funnel.sql").replace(f"restaurant_id = {RESTAURANT}",
                                                        "restaurant_id = :r")
    path = f"/tmp/compare-funnel-{os.getpid()}.sql"
    with open(path, "w") as f:
        f.write(f"\\set r random(1, {RESTAURANTS})\n{script};\n")
    out = subprocess.run(["pgbench", "-n", "-M", "prepared", "-c", "16", "-j", "2", "-T", "20",
                          "-h", "127.0.0.1", "-p", str(port), "-U", user, "-f", path, dbname],
                         capture_output=True, text=True, check=False)
    os.remove(path)
    tps = re.search(r"tps = ([\d.]+)", out.stdout)
    latency = re.search(r"latency average = ([\d.]+) ms", out.stdout)
    if not tps:
        return f"failed: {out.stderr.strip()[:200]}"
    return f"{float(tps.group(1)):,.0f} tps, average latency {latency.group(1)} ms"


def main():
    binary, work, orders, plays = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    os.makedirs(work, exist_ok=True)
    t = time.perf_counter()
    restaurant = ["restaurant", "--orders", str(orders), "--restaurants", str(RESTAURANTS)]
    streaming = ["streaming", "--events", str(plays)]
    for args, out, fmt in ((restaurant, "restaurant-json", "json"),
                           (restaurant, "restaurant-parquet", "parquet"),
                           (streaming, "streaming-json", "json"),
                           (streaming, "streaming-parquet", "parquet")):
        sh(binary, "gen", *args, "--out", os.path.join(work, out), "--format", fmt, "--now", NOW,
           stdout=subprocess.DEVNULL)
    import duckdb
    # One row per play, its time without a zone as the other tables have it.
    duck = duckdb.connect()
    duck.execute("SET TimeZone = 'UTC'")
    duck.execute(
        f"COPY (SELECT DISTINCT * REPLACE (CAST(event_time AS TIMESTAMP) AS event_time) "
        f"FROM read_parquet('{work}/streaming-parquet/plays.parquet') ORDER BY event_time, event_id) "
        f"TO '{work}/plays-dedup.parquet' (FORMAT parquet, COMPRESSION zstd)")
    events = sum(1 for _ in open(os.path.join(work, "restaurant-json", "orders.jsonl")))
    events += sum(1 for _ in open(os.path.join(work, "restaurant-json", "order_items.jsonl")))
    events += sum(1 for _ in open(os.path.join(work, "restaurant-json", "ratings.jsonl")))
    messages_plays = sum(1 for _ in open(os.path.join(work, "streaming-json", "plays.jsonl")))
    print(f"generated in {time.perf_counter() - t:.0f} s: restaurant {events:,} messages, "
          f"plays {messages_plays:,} messages", flush=True)
    expected = expected_counts(work)
    print(f"rows: {expected}", flush=True)

    reports = {}
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    version = f"0.1.0 at {commit}"
    kafka_note = None
    try:
        server, port, load, produced, data, broker = sluice_through_kafka(binary, work, expected)
    except BrokerLost as lost:
        kafka_note = str(lost)
        print(f"sluice: the Kafka load is left out: {lost}", flush=True)
        for child in CHILDREN:
            if child.poll() is None:
                child.terminate()
                child.wait()
    import_s, import_data = sluice_through_import(binary, work)
    print(f"sluice: loaded through sluice import in {import_s:.1f} s", flush=True)
    if kafka_note is None:
        conn = connect(port, "bench")
        reports["Sluice"] = server_report(conn, "sluice", load, dir_bytes(data), server.pid, version)
        print(f"sluice: loaded through Kafka in {load:.1f} s (produced in {produced:.1f} s)", flush=True)
        pgbench_sluice = pgbench(port, "bench", "sluice")
        conn.close()
        server.terminate()
        server.wait()
        broker.terminate()
        broker.wait()
    port = free_port()
    server = start_sluice(binary, import_data, port, work)
    conn = connect(port, "bench")
    wait_idle(server.pid, "Sluice (imported)")
    if kafka_note is None:
        imported = run_queries(lambda sql: conn.execute(sql).fetchall(), "sluice")
        for name, r in imported.items():
            if r.get("answer") != reports["Sluice"]["results"][name].get("answer"):
                sys.exit(f"Sluice through import answers {name!r} differently from Sluice through Kafka")
        print("sluice: the imported tables give the same answers", flush=True)
    else:
        # The imported tables answer the queries instead.
        reports["Sluice"] = server_report(conn, "sluice", import_s, dir_bytes(import_data), server.pid,
                                          version)
        pgbench_sluice = pgbench(port, "bench", "sluice")
    conn.close()
    server.terminate()
    server.wait()

    for name, label in (("duckdb", "DuckDB"), ("chdb", "chDB"), ("polars", "Polars"),
                        ("datafusion", "DataFusion")):
        out = subprocess.run([sys.executable, __file__, "--engine", name, work],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            sys.exit(f"{label} failed: {out.stderr[-2000:]}")
        reports[label] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{label}: loaded in {reports[label]['load_s']:.1f} s", flush=True)

    proc, pg_port, pg_load, pg_data, pg = postgres(work)
    reports["PostgreSQL"] = server_report(
        pg, "postgres", pg_load, pg.execute("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                                            "JOIN pg_namespace n ON n.oid = c.relnamespace "
                                            "WHERE n.nspname = 'public' AND c.relkind = 'r'").fetchone()[0],
        pg.execute("SELECT pg_backend_pid()").fetchone()[0], pg.execute("SHOW server_version").fetchone()[0])
    print(f"PostgreSQL: loaded in {pg_load:.1f} s", flush=True)
    pgbench_pg = pgbench(pg_port, "postgres", "postgres")
    pg.close()
    proc.terminate()
    proc.wait()

    report(reports, pgbench_sluice, pgbench_pg, import_s, events, messages_plays)
    if kafka_note:
        print(f"Sluice's Kafka load was left out: {kafka_note}")


def report(reports, pgbench_sluice, pgbench_pg, import_s, events, plays):
    """Prints the tables. Answers are checked against Sluice's first; an
    approximate count against Sluice's exact one (within 5%). A differing
    answer is marked in its cell and fails the run after everything is
    printed, so a long run's figures are never lost."""
    names = list(reports)
    reference = reports["Sluice"]["results"]
    mismatches = []
    print()
    print("| query | " + " | ".join(f"{n} ms" for n in names) + " | Sluice / best other |")
    print("|---|" + "---:|" * (len(names) + 1))
    for query, _, approx in queries():
        expected = reference["streaming: dau (exact)" if approx else query].get("answer")
        cells, best = [], None
        for n in names:
            r = reports[n]["results"][query]
            if r.get("ms") is None:
                cells.append(f"— ({r.get('error', 'n/a')[:40]})")
                continue
            answer = r["answer"]
            if approx:
                answer = [tuple(c.lstrip("~") if i else c for i, c in enumerate(row)) for row in answer]
                expected_cells = [tuple(c.lstrip("~") for c in row) for row in expected]
                same = len(answer) == len(expected_cells) and all(
                    a[0] == e[0] and abs(float(a[1]) - float(e[1])) <= 0.05 * float(e[1])
                    for a, e in zip(answer, expected_cells))
            else:
                same = close_enough(answer, expected)
            if not same:
                mismatches.append(f"{n} answers {query!r} differently: {answer[:3]} vs Sluice's {expected[:3]}")
                cells.append(f"{r['ms']:.1f} (≠)")
                continue
            cells.append(f"{r['ms']:.1f}")
            if n != "Sluice":
                best = r["ms"] if best is None else min(best, r["ms"])
        ratio = f"{reference[query]['ms'] / best:.2f}x" if best else "—"
        print(f"| {query} | " + " | ".join(cells) + f" | {ratio} |")
    print()
    print("| engine | version | load s | bytes on disk | peak memory MB |")
    print("|---|---|---:|---:|---:|")
    for n in names:
        r = reports[n]
        storage = f" ({r['storage']})" if "storage" in r else ""
        print(f"| {n} | {r['version']} | {r['load_s']:.1f} | {r['bytes']:,}{storage} | {r['peak_mb']:,.0f} |")
    print()
    print(f"Sluice through sluice import: {import_s:.1f} s")
    print(f"events: restaurant {events:,} messages, plays {plays:,} messages")
    print(f"pgbench, one-restaurant funnel, 16 clients, prepared: Sluice {pgbench_sluice}; "
          f"PostgreSQL {pgbench_pg}")
    with open(os.path.join(ROOT, "target", "compare-report.json"), "w") as f:
        json.dump({"reports": reports, "pgbench": [pgbench_sluice, pgbench_pg]}, f, default=str)
    if mismatches:
        sys.exit("answers differ:\n" + "\n".join(mismatches))


if __name__ == "__main__":
    if sys.argv[1] == "--engine":
        engine_main(sys.argv[2], sys.argv[3])
    else:
        try:
            main()
        finally:
            for child in CHILDREN:
                if child.poll() is None:
                    child.terminate()
                    child.wait()
