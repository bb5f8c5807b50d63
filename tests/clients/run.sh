#!/usr/bin/env bash
# Client compatibility: real PostgreSQL clients against a real `sluice serve`.
# Every step asserts on the rows it gets back. Needs psql, python3 with psycopg,
# SQLAlchemy, pyarrow and duckdb, node with `pg` (npm install here), Java with Debian's pgjdbc jar,
# chromium, and
# SLUICE_PG_URL naming a PostgreSQL 15 for the parameter matrix; .ci/run provides
# them. Usage: tests/clients/run.sh [path/to/sluice]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-$root/target/debug/sluice}
work=$(mktemp -d)
"$bin" serve --data-dir "$work/db" --pg-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 >"$work/out" 2>"$work/err" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q "PostgreSQL on" "$work/out" && break; sleep 0.1; done
port=$(sed -n 's/.*PostgreSQL on [0-9.]*:\([0-9]*\).*/\1/p' "$work/out")
[ -n "$port" ] || { echo "server did not start"; cat "$work/err"; exit 1; }
export PGHOST=127.0.0.1 PGPORT=$port PGUSER=sluice PGDATABASE=sluice

passed=0
failed=0
# expect NAME NEEDLE COMMAND...: runs COMMAND, passes if it succeeds and prints NEEDLE.
expect() {
  local name=$1 needle=$2
  shift 2
  local out
  if out=$("$@" 2>&1) && grep -qF -- "$needle" <<<"$out"; then
    passed=$((passed + 1)); echo "ok $name"
  else
    failed=$((failed + 1)); echo "FAIL $name (wanted: $needle)"; echo "$out" | head -40
  fi
}
# expect_error NAME NEEDLE COMMAND...: passes if COMMAND fails and prints NEEDLE.
expect_error() {
  local name=$1 needle=$2
  shift 2
  local out
  if ! out=$("$@" 2>&1) && grep -qF -- "$needle" <<<"$out"; then
    passed=$((passed + 1)); echo "ok $name"
  else
    failed=$((failed + 1)); echo "FAIL $name (wanted an error with: $needle)"; echo "$out" | head -40
  fi
}
# run NAME COMMAND...: passes if COMMAND succeeds (the command asserts itself).
run() {
  local name=$1
  shift
  local out
  if out=$("$@" 2>&1); then
    passed=$((passed + 1)); echo "$out"
  else
    failed=$((failed + 1)); echo "FAIL $name"; echo "$out" | head -40
  fi
}

psql -v ON_ERROR_STOP=1 -q <<'SQL' || { echo "setup failed"; exit 1; }
CREATE TABLE orders (ts TIMESTAMP NOT NULL, order_id TEXT, restaurant_id BIGINT, item TEXT, amount DOUBLE PRECISION,
                     PRIMARY KEY (order_id)) WITH (time_column = 'ts', retention = 'none');
INSERT INTO orders VALUES ('2024-05-01 12:00', 'o-1', 7, 'pizza', 12.5), ('2024-05-01 12:05', 'o-2', 7, 'pizza', 12.5),
  ('2024-05-01 12:10', 'o-3', 7, 'soup', 7.5), ('2024-05-01 13:00', 'o-4', 8, 'pizza', 11.0);
SQL

# psql 15 has no \bind (it came in psql 16); the extended protocol is covered by the
# drivers below.
expect "psql: SELECT version()" "PostgreSQL 15.0 (Sluice" psql -Atc 'SELECT version()'
expect "psql: \\dt lists the table" "public | orders | table" psql -c '\dt'
expect "psql: \\d shows column types" "amount        | double precision" psql -c '\d orders'
expect "psql: \\d shows the primary key" '"orders_pkey" PRIMARY KEY, btree (order_id)' psql -c '\d orders'
expect "psql: \\l lists the database" "sluice" psql -c '\l'
expect "psql: \\dn lists public" "public" psql -c '\dn'
expect "psql: aggregation" "pizza|3|36" psql -Atc 'SELECT item, count(*), sum(amount) FROM orders GROUP BY item ORDER BY item'

search_path="quote_ident(table_schema) IN (SELECT CASE WHEN trim(s[i]) = '\"\$user\"' THEN user ELSE trim(s[i]) END FROM generate_series(array_lower(string_to_array(current_setting('search_path'),','),1), array_upper(string_to_array(current_setting('search_path'),','),1)) as i, string_to_array(current_setting('search_path'),',') s)"
expect "grafana: version" "1500" psql -Atc "SELECT current_setting('server_version_num')::int/100 as version"
expect "grafana: schemas" "public" psql -Atc "SELECT schema_name AS \"name\" FROM information_schema.schemata WHERE schema_name NOT IN ('information_schema', 'pg_catalog', 'pg_toast') ORDER BY schema_name"
expect "grafana: table picker" "orders" psql -Atc "SELECT CASE WHEN $search_path THEN quote_ident(table_name) ELSE quote_ident(table_schema) || '.' || quote_ident(table_name) END AS \"table\" FROM information_schema.tables WHERE quote_ident(table_schema) NOT IN ('information_schema', 'pg_catalog') ORDER BY CASE WHEN $search_path THEN 0 ELSE 1 END, 1"
expect "grafana: column picker" "amount|double precision" psql -Atc "SELECT quote_ident(column_name) AS \"column\", data_type AS \"type\" FROM information_schema.columns WHERE CASE WHEN array_length(parse_ident('orders'),1) = 2 THEN quote_ident(table_schema) = (parse_ident('orders'))[1] AND quote_ident(table_name) = (parse_ident('orders'))[2] ELSE quote_ident(table_name) = 'orders' AND $search_path END"

# psql's ON_ERROR_ROLLBACK wraps each statement of a block in a savepoint and
# rolls back to it after an error: the block goes on, and COMMIT commits.
# (Without it, the SELECT after the error gets 25P02 and COMMIT says ROLLBACK.)
on_error_rollback=(psql -At -v ON_ERROR_ROLLBACK=on -c 'BEGIN' -c 'SELECT 1/0'
  -c "SELECT 'after ' || 'the error'" -c 'COMMIT')
expect "psql: ON_ERROR_ROLLBACK runs the next statement after an error" "after the error" \
  "${on_error_rollback[@]}"
expect "psql: ON_ERROR_ROLLBACK's block commits" "COMMIT" "${on_error_rollback[@]}"

# psql \copy: a million rows in from CSV and back out, byte for byte.
python3 -c '
import datetime
t = datetime.datetime(2024, 1, 1)
print("ts,order_id,restaurant_id,item,amount")
for i in range(1_000_000):
    print(f"{t + datetime.timedelta(seconds=i)},c-{i},{i % 500},item {i % 37},{i % 1000 / 4 + 0.125}")
' >"$work/million.csv"
psql -v ON_ERROR_STOP=1 -q <<'SQL'
CREATE TABLE million (ts TIMESTAMP NOT NULL, order_id TEXT, restaurant_id BIGINT, item TEXT, amount DOUBLE PRECISION)
  WITH (time_column = 'ts', retention = 'none');
SQL
expect "psql: \\copy FROM a million-row CSV" "COPY 1000000" psql -c "\copy million FROM '$work/million.csv' CSV HEADER"
expect "psql: the million rows are there" "1000000|249500000" psql -Atc "SELECT count(*), sum(restaurant_id) FROM million"
psql -q -c "\copy (SELECT * FROM million ORDER BY ts) TO '$work/million-out.csv' CSV HEADER"
if cmp -s "$work/million.csv" "$work/million-out.csv"; then
  passed=$((passed + 1)); echo "ok psql: \copy TO writes the million rows back byte for byte"
else
  failed=$((failed + 1)); echo "FAIL psql: \copy TO differs"; diff <(head -5 "$work/million.csv") <(head -5 "$work/million-out.csv")
fi
expect_error "psql: a bad row fails the whole COPY, naming its line" "line 3" psql -c "\copy million FROM STDIN CSV" <<<$'2024-01-01 00:00:00,x,1,a,1
2024-01-01 00:00:00,y,2,b,2
2024-01-01 00:00:00,z,notanumber,c,3'
expect "psql: ...and applies none of it" "1000000" psql -Atc "SELECT count(*) FROM million"

run "python" python3 "$here/python_check.py"
# Parquet in and out with the CLI (its own data directory), checked by DuckDB.
run "parquet" python3 "$here/parquet_check.py" "$bin" "$work"
run "node" node "$here/node_check.js"
jar=/usr/share/java/postgresql.jar
if javac -d "$work" -cp "$jar" "$here/JdbcCheck.java" "$here/ParamMatrix.java" >"$work/javac.log" 2>&1; then
  run "java" java -cp "$work:$jar" JdbcCheck
else
  failed=$((failed + 1)); echo "FAIL java: compile"; cat "$work/javac.log"
fi

# The parameter matrix (tests/params/matrix.json): every driver's answers compared
# with PostgreSQL 15's (SLUICE_PG_URL, which .ci/run starts).
run "python: param matrix" python3 "$here/param_matrix.py"
run "node: param matrix" node "$here/param_matrix.js"
run "java: param matrix" java -Duser.timezone=UTC -cp "$work:$jar" ParamMatrix "$here"

# TLS and SCRAM-SHA-256: a second server with a user (its verifier from
# `sluice passwd`) and a self-signed certificate; a third that requires TLS.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/tls.key" -out "$work/tls.crt" -days 1 \
  -subj "/CN=localhost" >/dev/null 2>&1
echo s3cret | "$bin" passwd dash --role reader >"$work/users.toml"
"$bin" serve --data-dir "$work/db2" --pg-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --config "$work/users.toml" \
  --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" >"$work/out2" 2>"$work/err2" &
pid2=$!
"$bin" serve --data-dir "$work/db3" --pg-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --config "$work/users.toml" \
  --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" --require-tls >"$work/out3" 2>"$work/err3" &
pid3=$!
trap 'kill $pid $pid2 $pid3 2>/dev/null; wait $pid $pid2 $pid3 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q "PostgreSQL on" "$work/out2" && grep -q "PostgreSQL on" "$work/out3" && break; sleep 0.1; done
port2=$(sed -n 's/.*PostgreSQL on [0-9.]*:\([0-9]*\).*/\1/p' "$work/out2")
port3=$(sed -n 's/.*PostgreSQL on [0-9.]*:\([0-9]*\).*/\1/p' "$work/out3")
expect "psql: TLS + SCRAM" "SSL connection (protocol: TLSv1.3" env PGPORT="$port2" PGUSER=dash PGPASSWORD=s3cret psql "sslmode=require" -c '\conninfo'
expect "psql: SCRAM without TLS" "plain" env PGPORT="$port2" PGUSER=dash PGPASSWORD=s3cret psql "sslmode=disable" -Atc "SELECT 'plain'"
expect_error "psql: a reader may not create tables" "42501" env PGPORT="$port2" PGUSER=dash PGPASSWORD=s3cret psql -v VERBOSITY=verbose -Atc "CREATE TABLE x (ts TIMESTAMP) WITH (time_column = 'ts')"
if env PGPORT="$port2" PGUSER=dash PGPASSWORD=wrong psql -w -Atc 'SELECT 1' >/dev/null 2>&1; then
  failed=$((failed + 1)); echo "FAIL psql: a wrong password was accepted"
else
  passed=$((passed + 1)); echo "ok psql: a wrong password is refused"
fi
expect_error "psql: require_tls refuses a plain connection" "TLS connections only" env PGPORT="$port3" PGUSER=dash PGPASSWORD=s3cret psql "sslmode=disable" -Atc "SELECT 1"
expect "psql: require_tls admits TLS" "tls" env PGPORT="$port3" PGUSER=dash PGPASSWORD=s3cret psql "sslmode=require" -Atc "SELECT 'tls'"

# The dashboard page in headless Chromium shows what psql shows (its own
# `sluice demo`; screenshot in target/dashboard.png).
run "chromium: dashboard page" python3 "$here/dashboard_check.py" "$bin"

echo "clients: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
