#!/usr/bin/env bash
# GROUP BY from 100 to 10 million groups and count(DISTINCT) in Sluice, DuckDB,
# chDB and Polars, with each engine's peak resident memory. Makes its own venv
# (target/bench-venv). Usage: benches/groups.sh [rows] (default 100,000,000);
# see docs/benchmarks.md.
set -euo pipefail
rows=${1:-100000000}
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/target/bench-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet duckdb chdb pyarrow numpy 'psycopg[binary]'
fi
"$venv/bin/python" -c "import polars" 2>/dev/null || "$venv/bin/pip" install --quiet polars
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" "$root/benches/groups.py" "$root/target/release/sluice" "$rows" "$work"
