#!/usr/bin/env bash
# Time and peak resident memory of large INSERT ... SELECT statements, one
# `sluice sql` process each, in a fresh data directory: the orders generator
# (benches/synthetic.py's SQL, 100,000 restaurants) for N rows, then the table
# copied into itself. Then the same generator through a server in statements
# of 1M rows, as synthetic.py loads, for 10,000 and 100,000 restaurants.
# Usage: benches/insert.sh [rows] [binary] (default 10,000,000 and
# target/release/sluice, built first); see docs/benchmarks.md.
set -euo pipefail
rows=${1:-10000000}
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/target/bench-venv
if [ -z "${2:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
fi
sluice=$(realpath "${2:-$root/target/release/sluice}")
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet duckdb chdb pyarrow numpy 'psycopg[binary]'
fi
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
generator=$(cd "$root/benches" && RESTAURANTS=100000 "$venv/bin/python" -c "
import synthetic as s
print(s.sluice_insert(0, $rows, s.step_micros($rows)))")
"$sluice" sql --data-dir "$data" -- "CREATE TABLE orders (ts TIMESTAMP, restaurant_id BIGINT, \
item TEXT, status TEXT, amount DOUBLE PRECISION) WITH (time_column = 'ts', retention = 'none', \
sort_key = 'restaurant_id')" >/dev/null
/usr/bin/time -f "generator, $rows rows: %e s, peak %M KB" \
  "$sluice" sql --data-dir "$data" -- "$generator"
/usr/bin/time -f "INSERT ... SELECT ... FROM orders, $rows rows: %e s, peak %M KB" \
  "$sluice" sql --data-dir "$data" -- "INSERT INTO orders SELECT ts, restaurant_id + 1, item, \
status, amount FROM orders"
"$sluice" sql --data-dir "$data" -- "SELECT count(*), sum(restaurant_id), count(DISTINCT item) FROM orders"
echo "on disk: $(du -sh "$data" | cut -f1)"
for restaurants in 10000 100000; do
  (cd "$root/benches" && RESTAURANTS=$restaurants "$venv/bin/python" insert.py "$sluice" "$rows" 1000000)
done
