"""Parquet round trip: a file written by pyarrow (every column type Sluice
stores, NULLs, a timestamp with a time zone) goes in with `sluice import`,
comes out with `sluice export`, and DuckDB's read_parquet must find exactly
the original rows in the export, partitioned by day.

Usage: python parquet_check.py SLUICE_BINARY WORK_DIR
"""

import datetime as dt
import decimal
import os
import subprocess
import sys

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

sluice, work = sys.argv[1], sys.argv[2]
data = os.path.join(work, "parquet-data")
out = os.path.join(work, "parquet-out")


def run(*args):
    done = subprocess.run([sluice, *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"sluice {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


ROWS = 3000
paris = dt.timezone(dt.timedelta(hours=2))
start = dt.datetime(2026, 6, 1, 22, 30, tzinfo=paris)  # 20:30 UTC
rows = range(ROWS)


def maybe(i, value):
    return None if i % 7 == 3 else value


original = pa.table(
    {
        # Columns out of the table's order and in other cases: matched by name.
        "Label": pa.array([maybe(i, f"naïve-{i % 13}") for i in rows], pa.string()),
        "ts": pa.array(
            [start + dt.timedelta(minutes=37 * i, microseconds=i) for i in rows],
            pa.timestamp("us", tz="Europe/Paris"),
        ),
        "local": pa.array(
            [maybe(i, dt.datetime(2020, 1, 1) + dt.timedelta(seconds=i)) for i in rows],
            pa.timestamp("us"),
        ),
        "ok": pa.array([maybe(i, i % 2 == 0) for i in rows], pa.bool_()),
        "small": pa.array([maybe(i, i - 1500) for i in rows], pa.int32()),
        "big": pa.array([maybe(i, i * 3_000_000_007) for i in rows], pa.int64()),
        "ratio": pa.array([maybe(i, i / 7) for i in rows], pa.float64()),
        "price": pa.array(
            [maybe(i, decimal.Decimal(i * 101 - 7000) / 100) for i in rows],
            pa.decimal128(10, 2),
        ),
    }
)
source = os.path.join(work, "events.parquet")
pq.write_table(original, source, row_group_size=1000)

run(
    "sql",
    "--data-dir",
    data,
    "CREATE TABLE events (ts TIMESTAMPTZ NOT NULL, label TEXT, local TIMESTAMP, ok BOOLEAN, "
    "small INTEGER, big BIGINT, ratio DOUBLE PRECISION, price NUMERIC(10,2)) "
    "WITH (time_column = 'ts', retention = 'none')",
)
said = run("import", "--data-dir", data, "--table", "events", source)
assert f"{ROWS} rows" in said, said
said = run("import", "--data-dir", data, "--table", "events", source)
assert "imported before" in said, said
counted = run("sql", "--data-dir", data, "SELECT count(*), count(label), sum(price) FROM events")
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
want = con.execute(
    f"SELECT count(*), count(Label), sum(price) FROM read_parquet('{source}')"
).fetchone()
for value in want:
    assert str(value) in counted, (want, counted)

run("export", "--data-dir", data, "--table", "events", "--out", out)
days = sorted(os.listdir(os.path.join(out, "events")))
expected_days = sorted(
    {(start + dt.timedelta(minutes=37 * i)).astimezone(dt.timezone.utc).strftime("date=%Y-%m-%d") for i in rows}
)
assert days == expected_days, (days[:3], expected_days[:3])

columns = "ts, label, local, ok, small, big, ratio, price"
con.execute(
    f"CREATE TABLE a AS SELECT ts, Label AS label, local, ok, small, big, ratio, price "
    f"FROM read_parquet('{source}')"
)
con.execute(
    f"CREATE TABLE b AS SELECT {columns} "
    f"FROM read_parquet('{out}/events/*/*.parquet', hive_partitioning = true)"
)
types = con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'b'").fetchall()
assert dict(types)["ts"] == "TIMESTAMP WITH TIME ZONE", types
assert dict(types)["price"] == "DECIMAL(10,2)", types
assert con.execute("SELECT count(*) FROM b").fetchone()[0] == ROWS
missing = con.execute("SELECT * FROM (SELECT * FROM a EXCEPT ALL SELECT * FROM b) LIMIT 3").fetchall()
extra = con.execute("SELECT * FROM (SELECT * FROM b EXCEPT ALL SELECT * FROM a) LIMIT 3").fetchall()
assert not missing and not extra, (missing, extra)
print(f"ok parquet: {ROWS} rows from pyarrow in and out again, identical in DuckDB, {len(days)} day partitions")
