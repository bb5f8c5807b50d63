#!/usr/bin/env bash
# COPY load rate: the same CSV of N orders (default 1,000,000) loaded with psql's
# \copy into Sluice (release build, a fresh data directory) and into PostgreSQL 15
# (a throwaway cluster, an unlogged-free plain table), best of 3 each; and the
# rows written back with \copy ... TO. Prints rows/s. See docs/benchmarks.md.
# Usage: benches/copy.sh [rows]
set -euo pipefail
rows=${1:-1000000}
root=$(cd "$(dirname "$0")/.." && pwd)
pgbin=/usr/lib/postgresql/15/bin
work=$(mktemp -d)
chmod 755 "$work"
cleanup() {
  [ -n "${spid:-}" ] && kill "$spid" 2>/dev/null || true
  if [ -f "$work/pg/postmaster.pid" ]; then
    su postgres -c "$pgbin/pg_ctl -D $work/pg -m immediate stop" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
cargo build --release --quiet --manifest-path "$root/Cargo.toml"

python3 - "$rows" >"$work/orders.csv" <<'PY'
import datetime, sys
n = int(sys.argv[1])
t = datetime.datetime(2024, 1, 1)
print("ts,order_id,restaurant_id,status,item,amount,qty")
statuses = ["NEW", "CONFIRMED", "IN_KITCHEN", "READY", "DELIVERED"]
for i in range(n):
    print(f"{t + datetime.timedelta(milliseconds=i * 37)},o-{i},{i % 500},{statuses[i % 5]},item {i % 37},{i % 1000 / 4 + 0.125},{1 + i % 4}")
PY
chmod 644 "$work/orders.csv"
echo "csv: $(wc -c <"$work/orders.csv") bytes, $rows rows"

columns="ts TIMESTAMP NOT NULL, order_id TEXT, restaurant_id BIGINT, status TEXT, item TEXT, amount DOUBLE PRECISION, qty INTEGER"
best_of_3() { # prints the best wall time in seconds of running "$@" three times
  local best=
  for _ in 1 2 3; do
    local start end
    start=$(date +%s.%N); "$@" >/dev/null; end=$(date +%s.%N)
    best=$(python3 -c "import sys; a=float(sys.argv[1]); b=sys.argv[2]; print(a if not b else min(a, float(b)))" "$(echo "$end - $start" | bc)" "$best")
  done
  echo "$best"
}

# Sluice
"$root/target/release/sluice" serve --data-dir "$work/sluice" --pg-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 >"$work/out" 2>"$work/err" &
spid=$!
for _ in $(seq 100); do grep -q "PostgreSQL on" "$work/out" && break; sleep 0.1; done
sport=$(sed -n 's/.*PostgreSQL on [0-9.]*:\([0-9]*\).*/\1/p' "$work/out")
s_load() {
  psql -h 127.0.0.1 -p "$sport" -U sluice -d sluice -q -c "DROP TABLE IF EXISTS orders" \
    -c "CREATE TABLE orders ($columns) WITH (time_column = 'ts', retention = 'none')"
  psql -h 127.0.0.1 -p "$sport" -U sluice -d sluice -c "\copy orders FROM '$work/orders.csv' CSV HEADER"
}
s_dump() { psql -h 127.0.0.1 -p "$sport" -U sluice -d sluice -c "\copy orders TO '$work/s-out.csv' CSV HEADER"; }
s_in=$(best_of_3 s_load)
s_out=$(best_of_3 s_dump)

# PostgreSQL 15
mkdir -p "$work/pg" && chown postgres "$work/pg"
su postgres -c "$pgbin/initdb -D $work/pg -A trust" >/dev/null
su postgres -c "$pgbin/pg_ctl -D $work/pg -o '-p 54399 -k $work/pg' -l $work/pg/log start" >/dev/null
p_load() {
  psql -h 127.0.0.1 -p 54399 -U postgres -q -c "DROP TABLE IF EXISTS orders" -c "CREATE TABLE orders ($columns)"
  psql -h 127.0.0.1 -p 54399 -U postgres -c "\copy orders FROM '$work/orders.csv' CSV HEADER"
}
p_dump() { psql -h 127.0.0.1 -p 54399 -U postgres -c "\copy orders TO '$work/p-out.csv' CSV HEADER"; }
p_in=$(best_of_3 p_load)
p_out=$(best_of_3 p_dump)

rate() { python3 -c "import sys; print(f'{int(sys.argv[1]) / float(sys.argv[2]):,.0f}')" "$rows" "$1"; }
echo "| | Sluice | PostgreSQL 15 |"
echo "|---|---:|---:|"
echo "| COPY FROM (\\copy, CSV) rows/s | $(rate "$s_in") | $(rate "$p_in") |"
echo "| COPY TO (\\copy, CSV) rows/s | $(rate "$s_out") | $(rate "$p_out") |"
