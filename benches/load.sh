#!/usr/bin/env bash
# Load test under ingestion, then SIGTERM: see benches/load.py and docs/benchmarks.md.
# Usage: benches/load.sh [seconds] [connections] [orders/s]   (defaults 600 500 2000)
# Needs tansu on PATH (.ci/run installs it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/target/bench-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet duckdb chdb pyarrow numpy 'psycopg[binary]' confluent-kafka
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
"$venv/bin/python" "$root/benches/load.py" "$root/target/release/sluice" "${1:-600}" "${2:-500}" "${3:-2000}"
