"""Load test: N connections (default 500) run the restaurant dashboard's queries in a
loop for D seconds while orders stream in from Kafka (a tansu broker), then SIGTERM
lands under that load. Prints p50/p99 latency and errors per query, the rows
ingested, and how the shutdown went (time to exit, clients told 57P01).

Usage: benches/load.py SLUICE_BINARY [seconds] [connections] [messages/s]
(run by benches/load.sh, which builds the release binary and the venv).
"""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import psycopg

QUERIES = {
    "funnel": "SELECT status, count(*) FROM orders WHERE event_time >= now() - interval '1 day' GROUP BY status ORDER BY status",
    "top items, last hour": "SELECT item, count(*) AS n FROM orders WHERE restaurant_id = %(r)s AND event_time >= now() - interval '1 hour' GROUP BY item ORDER BY n DESC LIMIT 5",
    "avg subtotal": "SELECT avg(subtotal) FROM orders WHERE restaurant_id = %(r)s",
    "sales today": "SELECT sum(subtotal) FROM orders WHERE status = 'DELIVERED' AND event_time >= date_trunc('day', now())",
    "distinct items": "SELECT restaurant_id, count(DISTINCT item) FROM orders GROUP BY restaurant_id ORDER BY 2 DESC LIMIT 10",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


def main():
    binary = sys.argv[1]
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 600
    connections = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    rate = int(sys.argv[4]) if len(sys.argv) > 4 else 2000
    work = tempfile.mkdtemp()
    kport = free_port()
    tansu = subprocess.Popen(
        ["tansu", "broker", "--listener-url", f"tcp://127.0.0.1:{kport}",
         "--advertised-listener-url", f"tcp://127.0.0.1:{kport}",
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{kport}"})
    for f in admin.create_topics([NewTopic("orders", 4, 1)]).values():
        f.result()

    server = subprocess.Popen(
        [binary, "serve", "--data-dir", f"{work}/data", "--pg-addr", "127.0.0.1:0",
         "--http-addr", "127.0.0.1:0", "--max-connections", str(connections + 20),
         "--shutdown-timeout", "5s"],
        stdout=subprocess.PIPE, stderr=open(f"{work}/server.log", "w"), text=True)
    line = server.stdout.readline()
    port = int(line.split("PostgreSQL on ")[1].split(",")[0].rsplit(":", 1)[1])
    dsn = f"host=127.0.0.1 port={port} user=bench dbname=sluice"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(
            "CREATE TABLE orders (event_time TIMESTAMP, order_id TEXT, restaurant_id BIGINT, "
            "status TEXT, item TEXT, subtotal DOUBLE PRECISION) WITH (time_column = 'event_time', "
            f"kafka_brokers = '127.0.0.1:{kport}', kafka_topic = 'orders', format = 'json', "
            "sort_key = 'restaurant_id, event_time')")

    # Orders at `rate` per second for the whole run, timestamped as they are produced.
    statuses = ["NEW", "CONFIRMED", "IN_KITCHEN", "READY_FOR_PICKUP", "DELIVERED"]
    total = rate * (seconds + 5)
    feed = f"{work}/orders.jsonl"
    start_ts = time.time()
    with open(feed, "w") as f:
        for i in range(total):
            ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start_ts + i / rate))
            f.write(json.dumps({"event_time": ts, "order_id": f"o-{i}", "restaurant_id": i % 500,
                                "status": statuses[i % 5], "item": f"item {i % 37}",
                                "subtotal": (i % 1000) / 4 + 0.125}) + "\n")
    producer = subprocess.Popen(
        [binary, "produce", "--brokers", f"127.0.0.1:{kport}", "--topic", "orders",
         "--file", feed, "--rate", str(rate)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    deadline = time.time() + seconds
    lock = threading.Lock()
    latencies = {q: [] for q in QUERIES}
    errors = {q: {} for q in QUERIES}
    shutdown_errors = {"57P01": 0, "other": 0}
    sigterm_at = [None]

    def client(k):
        rnd = random.Random(k)
        try:
            conn = psycopg.connect(dsn, autocommit=True)
        except Exception as e:  # noqa: BLE001
            with lock:
                errors["funnel"]["connect: " + type(e).__name__] = errors["funnel"].get("connect: " + type(e).__name__, 0) + 1
            return
        names = list(QUERIES)
        while True:
            name = names[rnd.randrange(len(names))]
            t0 = time.perf_counter()
            try:
                conn.execute(QUERIES[name], {"r": rnd.randrange(500)}).fetchall()
                elapsed = (time.perf_counter() - t0) * 1e3
                if sigterm_at[0] is None:
                    with lock:
                        latencies[name].append(elapsed)
            except Exception as e:  # noqa: BLE001
                code = getattr(getattr(e, "diag", None), "sqlstate", None) or type(e).__name__
                with lock:
                    if sigterm_at[0] is not None:
                        shutdown_errors["57P01" if code == "57P01" else "other"] += 1
                    else:
                        errors[name][code] = errors[name].get(code, 0) + 1
                if sigterm_at[0] is not None:
                    return
            # After SIGTERM clients go on querying until the server tells them
            # it is going away; new connections are refused meanwhile.

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(connections)]
    for t in threads:
        t.start()
    while time.time() < deadline:
        time.sleep(1)
    with psycopg.connect(dsn, autocommit=True) as c:
        ingested = c.execute("SELECT count(*) FROM orders").fetchone()[0]
    sigterm_at[0] = time.time()
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=120)
    exit_seconds = time.time() - sigterm_at[0]
    for t in threads:
        t.join(timeout=10)
    producer.kill()
    tansu.kill()

    print(f"{connections} connections, {seconds} s, {rate} orders/s produced; "
          f"{ingested:,} rows ingested when SIGTERM came")
    print("| query | runs | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---|")
    for name in QUERIES:
        lat = latencies[name]
        errs = ", ".join(f"{k}: {v}" for k, v in errors[name].items()) or "0"
        print(f"| {name} | {len(lat):,} | {percentile(lat, 0.5):.1f} | {percentile(lat, 0.99):.1f} | {errs} |")
    total_runs = sum(len(v) for v in latencies.values())
    print(f"throughput: {total_runs / seconds:,.0f} queries/s")
    print(f"SIGTERM under load: exited in {exit_seconds:.1f} s (shutdown_timeout 5 s, exit code "
          f"{server.returncode}); clients saw 57P01 {shutdown_errors['57P01']} times, other errors "
          f"{shutdown_errors['other']}")


if __name__ == "__main__":
    main()
