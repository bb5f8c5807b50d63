#!/usr/bin/env bash
# Parquet import and export rates: Sluice against DuckDB and chDB on the same
# file, answers compared first. Makes its own venv (target/bench-venv).
# Usage: benches/import.sh [rows]   (default 10,000,000); see docs/benchmarks.md.
set -euo pipefail
rows=${1:-10000000}
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/target/bench-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet duckdb chdb pyarrow numpy 'psycopg[binary]'
fi
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
PYTHONPATH="$root/benches" "$venv/bin/python" "$root/benches/import.py" "$root/target/release/sluice" "$rows" "$work"
