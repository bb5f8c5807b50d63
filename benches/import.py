"""Parquet import and export: Sluice against DuckDB and chDB on one file.

Run through benches/import.sh, which makes the venv. The file is the orders
table of benches/synthetic.py (numpy-built, zstd), written by pyarrow. Each
engine loads it into its own on-disk table (Sluice: `sluice import` into
sealed segments; DuckDB: CREATE TABLE AS SELECT * FROM read_parquet; chDB: a
MergeTree filled with INSERT ... SELECT FROM file()), then writes it out as
Parquet (Sluice: `sluice export`, by day; DuckDB: COPY ... PARTITION_BY day;
chDB: INTO OUTFILE). Answers are compared before any time is reported: a
GROUP BY over Sluice's table against DuckDB's over the file, and Sluice's
export read back by DuckDB against the file, row for row.

Usage: python import.py SLUICE_BINARY ROWS WORK_DIR
"""

import os
import shutil
import statistics
import subprocess
import sys
import time

import chdb.session
import duckdb
import pyarrow.parquet as pq

import compare

RUNS = 3
sluice, rows, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
source = os.path.join(work, "orders.parquet")


def write_file():
    step = compare.step_micros(rows)
    writer = None
    for lo in range(0, rows, compare.CHUNK):
        chunk = compare.numpy_chunk(lo, min(lo + compare.CHUNK, rows), step)
        if writer is None:
            writer = pq.ParquetWriter(source, chunk.schema, compression="zstd")
        writer.write_table(chunk)
    writer.close()


def run(*args):
    done = subprocess.run([sluice, *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"sluice {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def cells(text):
    return [
        [c.strip() for c in line.strip("│").split("┆")]
        for line in text.splitlines()
        if line.startswith("│")
    ][1:]


def timed(step):
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def sluice_import(data):
    shutil.rmtree(data, ignore_errors=True)
    run(
        "sql", "--data-dir", data,
        "CREATE TABLE orders (ts TIMESTAMP NOT NULL, restaurant_id BIGINT, item TEXT, "
        "status TEXT, amount DOUBLE PRECISION) WITH (time_column = 'ts', retention = 'none')",
    )
    return timed(lambda: run("import", "--data-dir", data, "--table", "orders", source))


def duckdb_import(path):
    for p in (path, path + ".wal"):
        if os.path.exists(p):
            os.remove(p)
    con = duckdb.connect(path)
    seconds = timed(lambda: con.execute(f"CREATE TABLE orders AS SELECT * FROM read_parquet('{source}')"))
    return seconds, con


def chdb_import(path):
    shutil.rmtree(path, ignore_errors=True)
    session = chdb.session.Session(path)
    session.query(
        "CREATE TABLE orders (ts DateTime64(6), restaurant_id Int64, item String, "
        "status String, amount Float64) ENGINE = MergeTree ORDER BY ts"
    )
    seconds = timed(lambda: session.query(f"INSERT INTO orders SELECT * FROM file('{source}', Parquet)"))
    return seconds, session


def report(name, seconds, megabytes):
    best = min(seconds)
    median = statistics.median(seconds)
    print(
        f"{name:<22} median {median:6.2f} s  best {best:6.2f} s  "
        f"{rows / median / 1e6:5.2f} M rows/s  {megabytes / median:6.1f} MB/s"
    )
    return median


write_file()
mb = os.path.getsize(source) / 1e6
print(f"{rows} rows, {mb:.1f} MB of Parquet (zstd); {RUNS} runs each, on {os.cpu_count()} cores")

data = os.path.join(work, "sluice")
imports = {"sluice import": [], "duckdb CTAS": [], "chdb INSERT SELECT": []}
duck = ch = None
for _ in range(RUNS):
    imports["sluice import"].append(sluice_import(data))
    if duck is not None:
        duck.close()
    seconds, duck = duckdb_import(os.path.join(work, "duck.db"))
    imports["duckdb CTAS"].append(seconds)
    if ch is not None:
        ch.close()
    seconds, ch = chdb_import(os.path.join(work, "chdb"))
    imports["chdb INSERT SELECT"].append(seconds)

# The answers agree before any time is reported.
query = "SELECT item, status, count(*), sum(restaurant_id) FROM orders GROUP BY item, status ORDER BY item, status"
ours = [tuple(r) for r in cells(run("sql", "--data-dir", data, query))]
theirs = [tuple(str(v) for v in r) for r in duck.execute(query).fetchall()]
assert ours == theirs, (ours[:3], theirs[:3])
print(f"answers: Sluice's GROUP BY matches DuckDB's ({len(ours)} groups)")

print("\nimport")
medians = {name: report(name, s, mb) for name, s in imports.items()}
print(f"sluice / chdb load time: {medians['sluice import'] / medians['chdb INSERT SELECT']:.2f}x")

exports = {"sluice export": [], "duckdb COPY by day": [], "chdb INTO OUTFILE": []}
out = os.path.join(work, "out")
for _ in range(RUNS):
    shutil.rmtree(out, ignore_errors=True)
    exports["sluice export"].append(
        timed(lambda: run("export", "--data-dir", data, "--table", "orders", "--out", out))
    )
    duck_out = os.path.join(work, "duck-out")
    shutil.rmtree(duck_out, ignore_errors=True)
    exports["duckdb COPY by day"].append(
        timed(
            lambda: duck.execute(
                f"COPY (SELECT *, CAST(ts AS DATE) AS date FROM orders) TO '{duck_out}' "
                "(FORMAT parquet, PARTITION_BY (date), COMPRESSION zstd)"
            )
        )
    )
    ch_out = os.path.join(work, "chdb-out.parquet")
    if os.path.exists(ch_out):
        os.remove(ch_out)
    exports["chdb INTO OUTFILE"].append(
        timed(lambda: ch.query(f"SELECT * FROM orders INTO OUTFILE '{ch_out}' FORMAT Parquet"))
    )

check = duckdb.connect()
check.execute(f"CREATE VIEW a AS SELECT ts, restaurant_id, item, status, amount FROM read_parquet('{source}')")
check.execute(
    f"CREATE VIEW b AS SELECT ts, restaurant_id, item, status, amount "
    f"FROM read_parquet('{out}/orders/*/*.parquet', hive_partitioning = true)"
)
differ = check.execute(
    "SELECT (SELECT count(*) FROM (SELECT * FROM a EXCEPT ALL SELECT * FROM b)) + "
    "(SELECT count(*) FROM (SELECT * FROM b EXCEPT ALL SELECT * FROM a))"
).fetchone()[0]
days = len(os.listdir(os.path.join(out, "orders")))
assert differ == 0, f"{differ} rows differ"
print(f"\nexport (read back by DuckDB: identical rows, {days} day partitions)")
for name, s in exports.items():
    report(name, s, mb)
