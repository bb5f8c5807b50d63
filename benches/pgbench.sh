#!/usr/bin/env bash
# pgbench against `sluice serve`: a parameterised per-restaurant aggregation, the
# dashboard backend's typical query, in pgbench's simple, extended and prepared
# protocol modes, then single-row INSERTs with 1 and 16 clients. Usage: benches/pgbench.sh [rows] [seconds]
# Prints one line per mode with pgbench's tps; see docs/benchmarks.md.
set -euo pipefail
rows=${1:-1000000}
secs=${2:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin=$root/target/release/sluice
work=$(mktemp -d)
"$bin" serve --data-dir "$work/db" --pg-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 >"$work/out" 2>"$work/err" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q "PostgreSQL on" "$work/out" && break; sleep 0.1; done
port=$(sed -n 's/.*PostgreSQL on [0-9.]*:\([0-9]*\).*/\1/p' "$work/out")
export PGHOST=127.0.0.1 PGPORT=$port PGUSER=sluice PGDATABASE=sluice

psql -q -v ON_ERROR_STOP=1 <<SQL
CREATE TABLE orders (ts TIMESTAMP, restaurant_id BIGINT, item TEXT, status TEXT, amount DOUBLE PRECISION)
  WITH (time_column = 'ts', retention = 'none');
INSERT INTO orders
SELECT TIMESTAMP '2024-05-01' + INTERVAL '1 second' * g, g % 1000, 'item-' || (g * 7 % 200),
       CASE g % 5 WHEN 0 THEN 'NEW' WHEN 1 THEN 'CONFIRMED' WHEN 2 THEN 'IN_KITCHEN'
                  WHEN 3 THEN 'READY_FOR_PICKUP' ELSE 'DELIVERED' END,
       (g % 50) + 0.5
FROM generate_series(1, $rows) AS g;
SQL
echo "loaded $(psql -Atc 'SELECT count(*) FROM orders') rows"
sleep 2  # the background sealer takes segment_rows (1M) rows into a segment file
echo "sealed segment files: $(ls "$work"/db/tables/*/seg-*.sluice 2>/dev/null | wc -l)"

cat >"$work/q.sql" <<'SQL'
\set r random(0, 999)
SELECT item, count(*), sum(amount) FROM orders WHERE restaurant_id = :r GROUP BY item ORDER BY 2 DESC, 1 LIMIT 5;
SQL
for mode in simple extended prepared; do
  out=$(pgbench -n -M "$mode" -f "$work/q.sql" -c 8 -j 2 -T "$secs" 2>&1)
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
  failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")
  lat=$(sed -n 's/^latency average = \(.*\)$/\1/p' <<<"$out")
  echo "mode=$mode tps=$tps latency_avg=$lat failed=${failed:-0}"
done

# Single-row INSERTs, each acknowledged only once fsynced: with one client every
# INSERT waits for its own fsync; with many, concurrent INSERTs share one (group
# commit), so tps should grow with the clients.
cat >"$work/insert.sql" <<'SQL'
\set r random(0, 999)
INSERT INTO orders VALUES (TIMESTAMP '2024-06-01 12:00:00', :r, 'item-1', 'NEW', 1.5);
SQL
for clients in 1 16; do
  out=$(pgbench -n -M prepared -f "$work/insert.sql" -c "$clients" -j 2 -T "$secs" 2>&1)
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
  failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")
  echo "insert clients=$clients tps=$tps failed=${failed:-0}"
done
