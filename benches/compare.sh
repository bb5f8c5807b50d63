#!/usr/bin/env bash
# The two dashboards side by side: Sluice (loaded through Kafka and through
# sluice import), DuckDB, chDB, Polars, DataFusion and PostgreSQL 15 on the
# same generated rows, every dashboard query timed per engine with answers
# checked equal, load time, bytes on disk, peak memory, and pgbench on the
# one-restaurant funnel. See benches/compare.py and docs/benchmarks.md.
#
# Usage: benches/compare.sh [--large]
#   default: 10M events per workload (1,000,000 orders ≈ 9.4M messages;
#            10,000,000 plays); --large: ten times that.
# Needs tansu (cargo install tansu --features dynostore), PostgreSQL 15 under
# /usr/lib/postgresql/15/bin and pgbench; makes target/bench-venv.
set -euo pipefail
orders=1000000
plays=10000000
if [ "${1:-}" = "--large" ]; then
  orders=10000000
  plays=100000000
fi
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/target/bench-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -c 'import duckdb, chdb, polars, datafusion, pyarrow, psycopg' 2>/dev/null ||
  "$venv/bin/pip" install --quiet duckdb chdb polars datafusion pyarrow numpy 'psycopg[binary]'
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
work=$(mktemp -d /tmp/sluice-compare.XXXXXX)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" -u "$root/benches/compare.py" "$root/target/release/sluice" "$work" "$orders" "$plays"
