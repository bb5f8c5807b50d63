"""INSERT ... SELECT through a server in statements of CHUNK rows, as
benches/synthetic.py loads Sluice: the orders generator (RESTAURANTS from
the environment, default 10,000) for ROWS rows, then the wait for the
background seal. Prints the total and the slowest and fastest statement.

Usage: python insert.py SLUICE_BINARY ROWS CHUNK
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import psycopg

import synthetic


def main():
    binary, rows, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    data = tempfile.mkdtemp()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = subprocess.Popen([binary, "serve", "--data-dir", data, "--pg-addr",
                               f"127.0.0.1:{port}", "--http-addr", "127.0.0.1:0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                conn = psycopg.connect(f"host=127.0.0.1 port={port} user=bench dbname=sluice",
                                       autocommit=True)
                break
            except psycopg.OperationalError:
                time.sleep(0.1)
        conn.execute("CREATE TABLE orders (ts TIMESTAMP, restaurant_id BIGINT, item TEXT, "
                     "status TEXT, amount DOUBLE PRECISION) WITH (time_column = 'ts', "
                     f"retention = 'none', segment_rows = '{chunk}', sort_key = 'ts')")
        step = synthetic.step_micros(rows)
        started = time.perf_counter()
        each = []
        for lo in range(0, rows, chunk):
            t = time.perf_counter()
            conn.execute(synthetic.sluice_insert(lo, min(lo + chunk, rows), step))
            each.append(time.perf_counter() - t)
        for _ in range(2400):
            mutable = conn.execute("SELECT rows FROM sluice.segments WHERE "
                                   "table_name = 'orders' AND state = 'mutable'").fetchone()[0]
            if mutable < chunk:
                break
            time.sleep(0.25)
        print(f"{rows:,} rows in statements of {chunk:,} "
              f"({synthetic.RESTAURANTS:,} restaurants): {time.perf_counter() - started:.1f} s "
              f"to sealed; statements {min(each):.2f}-{max(each):.2f} s", flush=True)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
