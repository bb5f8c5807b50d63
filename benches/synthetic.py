"""Dashboard queries on an orders table: Sluice against DuckDB and chDB.

Run through benches/synthetic.sh, which makes the venv. Every engine gets the same
rows: Sluice generates them with INSERT ... SELECT over generate_series, the peers
read a Parquet file numpy built from the same integer formulas, and each query's
answers are compared across engines before any time is reported.

Usage: python synthetic.py SLUICE_BINARY ROWS WORK_DIR [SORT_KEY]

SORT_KEY (default "ts") is the storage order every engine gets: Sluice's
`sort_key` table option, chDB's MergeTree ORDER BY, the order DuckDB's table is
written in. RESTAURANTS in the environment (default 10,000) is how many
restaurants the orders spread over (issue 17's setup has 100,000).
"""

import datetime as dt
import os
import re
import socket
import statistics
import subprocess
import sys
import time

import chdb.session
import duckdb
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

STATUSES = ["DELIVERED", "CONFIRMED", "IN_KITCHEN", "NEW", "CANCELLED"]
START = dt.datetime(2024, 6, 1)
SPAN_MICROS = 30 * 86_400 * 1_000_000  # the rows cover 30 days, whatever their number
CHUNK = 1_000_000
RUNS = 10
RESTAURANT = 42
RESTAURANTS = int(os.environ.get("RESTAURANTS", "10000"))


def step_micros(rows):
    return SPAN_MICROS // rows


# The generator, once as SQL (Sluice) and once as numpy (the peers). Integer-only
# arithmetic so both produce identical rows. Each column draws on its own hash of
# the row number g: a quadratic mod the prime 2^31 - 1, so that no column is a
# periodic or linear sequence a compressor could exploit (an earlier generator
# used affine hashes mod 2^32 whose low bits repeat, and zstd shrank its columns
# to a few bits per row for every engine: flattering and meaningless).
#   ts: 30 days, in order, each row at a random point of its own time slot
#   restaurant_id: 10,000 values, uniform
#   item: 200 values, skewed (the cube of a uniform 10-bit draw)
#   status: 5 values, 60/15/10/10/5 %
#   amount: 5.00 .. 104.99, a price in cents (so exactly the double nearest it)
P = 2147483647
SALTS = [(48271, 69621, 12345), (16807, 40692, 54321), (39373, 44488, 99991),
         (62089, 91103, 77777), (22695, 75301, 31337)]


def mix_sql(salt):
    a, b, c = SALTS[salt]
    return f"(((g * g) % {P}) * {a} + g * {b} + {c}) % {P}"


def mix_np(g, salt):
    a, b, c = SALTS[salt]
    return (((g * g) % P) * a + g * b + c) % P


def sluice_insert(lo, hi, step):
    u = f"({mix_sql(1)} % 1024)"
    s = f"({mix_sql(2)} % 100)"
    return f"""
INSERT INTO orders
SELECT TIMESTAMP '{START:%Y-%m-%d}' + INTERVAL '1 microsecond' * (g * {step} + {mix_sql(3)} % {step}),
       {mix_sql(0)} % {RESTAURANTS},
       'item-' || ({u} * {u} * {u} * 200 / 1073741824),
       CASE WHEN {s} < 60 THEN 'DELIVERED'
            WHEN {s} < 75 THEN 'CONFIRMED'
            WHEN {s} < 85 THEN 'IN_KITCHEN'
            WHEN {s} < 95 THEN 'NEW'
            ELSE 'CANCELLED' END,
       ({mix_sql(4)} % 10000 + 500) / 100.0
FROM generate_series(CAST({lo} AS BIGINT), {hi - 1}) AS g"""


def numpy_chunk(lo, hi, step):
    g = np.arange(lo, hi, dtype=np.int64)
    u = mix_np(g, 1) % 1024
    item = u * u * u * 200 // 1073741824
    bucket = mix_np(g, 2) % 100
    status = np.select(
        [bucket < 60, bucket < 75, bucket < 85, bucket < 95], [0, 1, 2, 3], default=4
    )
    start = np.datetime64(START, "us").astype(np.int64)
    return pa.table(
        {
            "ts": pa.array(start + g * step + mix_np(g, 3) % step, pa.timestamp("us")),
            "restaurant_id": pa.array(mix_np(g, 0) % RESTAURANTS),
            "item": pa.array(np.char.add("item-", item.astype(str))),
            "status": pa.DictionaryArray.from_arrays(
                pa.array(status, pa.int32()), pa.array(STATUSES)
            ).cast(pa.string()),
            "amount": pa.array((mix_np(g, 4) % 10000 + 500) / 100.0),
        }
    )


def queries(rows):
    step = step_micros(rows)
    end = START + dt.timedelta(microseconds=rows * step)
    hour = (end - dt.timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    day = (end - dt.timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    r = RESTAURANT
    # (name, standard SQL for Sluice and DuckDB, ClickHouse SQL for chDB)
    return [
        (
            "group by item, status",
            "SELECT item, status, count(*), sum(amount) FROM orders GROUP BY item, status ORDER BY item, status",
            None,
        ),
        (
            "top-10 restaurants by sales",
            "SELECT restaurant_id, sum(amount) AS s FROM orders GROUP BY restaurant_id ORDER BY s DESC, restaurant_id LIMIT 10",
            None,
        ),
        (
            "hourly counts by status, last day",
            f"SELECT date_trunc('hour', ts) AS h, status, count(*) FROM orders WHERE ts >= TIMESTAMP '{day}' GROUP BY 1, 2 ORDER BY 1, 2",
            f"SELECT toDateTime64(toStartOfHour(ts), 6, 'UTC') AS h, status, count(*) FROM orders WHERE ts >= toDateTime64('{day}', 6, 'UTC') GROUP BY 1, 2 ORDER BY 1, 2",
        ),
        (
            "one restaurant: top-5 items, last hour",
            f"SELECT item, count(*) AS c FROM orders WHERE restaurant_id = {r} AND ts >= TIMESTAMP '{hour}' GROUP BY item ORDER BY c DESC, item LIMIT 5",
            f"SELECT item, count(*) AS c FROM orders WHERE restaurant_id = {r} AND ts >= toDateTime64('{hour}', 6, 'UTC') GROUP BY item ORDER BY c DESC, item LIMIT 5",
        ),
        (
            "one restaurant: status counts",
            f"SELECT status, count(*) FROM orders WHERE restaurant_id = {r} GROUP BY status ORDER BY status",
            None,
        ),
        (
            "count(distinct item) per restaurant",
            "SELECT restaurant_id, count(DISTINCT item) FROM orders GROUP BY restaurant_id ORDER BY restaurant_id",
            None,
        ),
    ]


def normalise(rows):
    """Answers in a comparable form: floats to cents, timestamps as naive text."""
    out = []
    for row in rows:
        cells = []
        for v in row:
            if isinstance(v, float):
                cells.append(f"{v:.2f}")
            elif isinstance(v, dt.datetime):
                cells.append(v.replace(tzinfo=None).isoformat(sep=" "))
            else:
                cells.append(str(v))
        out.append(tuple(cells))
    return out


def timed(run):
    """Best of RUNS after one warm-up, in milliseconds, and the answer."""
    answer = run()
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        run()
        times.append((time.perf_counter() - t) * 1000)
    return min(times), statistics.median(times), answer


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dir_bytes(path, pattern):
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files if re.search(pattern, f))
    return total


def main():
    binary, rows, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sort_key = sys.argv[4] if len(sys.argv) > 4 else "ts"
    print(f"storage order: {sort_key}", flush=True)
    step = step_micros(rows)
    # Segments of a million rows (Sluice's default), or four segments on a small run.
    chunk = max(1, min(CHUNK, rows // 4))
    os.makedirs(work, exist_ok=True)

    # Parquet (zstd) for the peers, and for the bytes-per-row comparison.
    parquet = os.path.join(work, "orders.parquet")
    t = time.perf_counter()
    writer = None
    for lo in range(0, rows, CHUNK):
        part = numpy_chunk(lo, min(lo + CHUNK, rows), step)
        if writer is None:
            writer = pq.ParquetWriter(parquet, part.schema, compression="zstd")
        writer.write_table(part)
    writer.close()
    print(f"parquet: {rows:,} rows in {time.perf_counter() - t:.1f} s", flush=True)

    # Sluice, over the PostgreSQL protocol.
    port = free_port()
    data = os.path.join(work, "sluice-data")
    server = subprocess.Popen(
        [binary, "serve", "--data-dir", data, "--pg-addr", f"127.0.0.1:{port}", "--http-addr", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                conn = psycopg.connect(f"host=127.0.0.1 port={port} user=bench dbname=sluice", autocommit=True)
                break
            except psycopg.OperationalError:
                time.sleep(0.1)
        t = time.perf_counter()
        conn.execute(
            "CREATE TABLE orders (ts TIMESTAMP, restaurant_id BIGINT, item TEXT, status TEXT, "
            f"amount DOUBLE PRECISION) WITH (time_column = 'ts', retention = 'none', segment_rows = '{chunk}', "
            f"sort_key = '{sort_key}')"
        )
        for lo in range(0, rows, chunk):
            conn.execute(sluice_insert(lo, min(lo + chunk, rows), step))
        # Wait for the background sealer to take every full segment.
        for _ in range(600):
            mutable = conn.execute(
                "SELECT rows FROM sluice.segments WHERE table_name = 'orders' AND state = 'mutable'"
            ).fetchone()[0]
            if mutable < chunk:
                break
            time.sleep(0.5)
        segments = conn.execute(
            "SELECT count(*), sum(bytes), sum(rows) FROM sluice.segments WHERE state = 'sealed'"
        ).fetchone()
        print(
            f"sluice: loaded in {time.perf_counter() - t:.1f} s; {segments[0]} sealed segments, "
            f"{rows - segments[2]:,} rows still mutable",
            flush=True,
        )

        # DuckDB and chDB, each in its own native storage.
        t = time.perf_counter()
        duck = duckdb.connect(os.path.join(work, "duck.db"))
        duck.execute(f"CREATE OR REPLACE TABLE orders AS SELECT * FROM read_parquet('{parquet}') ORDER BY {sort_key}")
        print(f"duckdb: loaded in {time.perf_counter() - t:.1f} s", flush=True)
        t = time.perf_counter()
        ch = chdb.session.Session(os.path.join(work, "chdb"))
        ch.query("DROP TABLE IF EXISTS orders")
        ch.query(
            "CREATE TABLE orders (ts DateTime64(6, 'UTC'), restaurant_id Int64, item LowCardinality(String), "
            "status LowCardinality(String), amount Float64) ENGINE = MergeTree "
            f"ORDER BY ({sort_key})"
        )
        ch.query(f"INSERT INTO orders SELECT * FROM file('{parquet}', Parquet)")
        ch.query("OPTIMIZE TABLE orders FINAL")
        print(f"chdb: loaded in {time.perf_counter() - t:.1f} s", flush=True)

        def run_ch(sql):
            table = ch.query(sql, "ArrowTable")
            return [tuple(r.values()) for r in table.to_pylist()]

        print()
        print("| query | Sluice ms | DuckDB ms | chDB ms | Sluice / best peer |")
        print("|---|---:|---:|---:|---:|")
        for name, sql, ch_sql in queries(rows):
            s_best, _, s_ans = timed(lambda: conn.execute(sql).fetchall())
            d_best, _, d_ans = timed(lambda: duck.execute(sql).fetchall())
            c_best, _, c_ans = timed(lambda: run_ch(ch_sql or sql))
            same = normalise(s_ans) == normalise(d_ans) == normalise(c_ans)
            if not same:
                answers = list(zip(normalise(s_ans), normalise(d_ans), normalise(c_ans)))
                first = next((a for a in answers if len(set(a)) > 1), None)
                lengths = (len(s_ans), len(d_ans), len(c_ans))
                sys.exit(f"answers differ for {name!r} (rows {lengths}): Sluice, DuckDB, chDB = {first}")
            best = min(d_best, c_best)
            print(f"| {name} | {s_best:.1f} | {d_best:.1f} | {c_best:.1f} | {s_best / best:.2f}x |", flush=True)

        sluice_bytes = dir_bytes(data, r"^seg-.*\.sluice$")
        parquet_bytes = os.path.getsize(parquet)
        sealed_rows = segments[2]
        print()
        print(
            f"bytes per row: Sluice segments {sluice_bytes / sealed_rows:.2f} "
            f"({sealed_rows:,} sealed rows), Parquet zstd {parquet_bytes / rows:.2f}"
        )
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
