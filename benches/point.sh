#!/usr/bin/env bash
# One restaurant's dashboard under pgbench: Sluice with no table options, with
# a sort key, and PostgreSQL 15 with btree indexes, on the same generated
# orders; tps and p50/p99 latency at 16 and 100 clients. See benches/point.py
# and docs/benchmarks.md.
#
# Usage: benches/point.sh [rows] [seconds]   (default 10,000,000 rows, 10 s
# per pgbench run). Needs PostgreSQL 15 under /usr/lib/postgresql/15/bin and
# pgbench; makes target/bench-venv.
set -euo pipefail
rows=${1:-10000000}
secs=${2:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/target/bench-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -c 'import duckdb, psycopg' 2>/dev/null ||
  "$venv/bin/pip" install --quiet duckdb pyarrow 'psycopg[binary]'
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
work=$(mktemp -d /tmp/sluice-point.XXXXXX)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" -u "$root/benches/point.py" "$root/target/release/sluice" "$work" "$rows" "$secs"
