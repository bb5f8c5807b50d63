#!/usr/bin/env bash
# Dashboard queries on an orders table in Sluice, DuckDB and chDB, plus bytes on
# disk per row against Parquet-zstd. Makes its own venv (target/bench-venv).
# Usage: benches/synthetic.sh [rows] [sort_key]   (defaults 10,000,000 and ts: the
# storage order every engine gets); see docs/benchmarks.md.
set -euo pipefail
rows=${1:-10000000}
sort_key=${2:-ts}
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/target/bench-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet duckdb chdb pyarrow numpy 'psycopg[binary]'
fi
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" "$root/benches/synthetic.py" "$root/target/release/sluice" "$rows" "$work" "$sort_key"
