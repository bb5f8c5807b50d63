// The parameter matrix (tests/params/matrix.json) through node-postgres, which
// sends every parameter as text of unspecified type (OID 0): each one's type comes
// from the server's resolution, as PostgreSQL's `unknown`. Every case runs against
// Sluice (PGPORT) and PostgreSQL 15 (SLUICE_PG_URL); rows (as the text the server
// sent, tagged by type) or the error's SQLSTATE must be equal.
const { Client } = require('pg');
const fs = require('fs');
const path = require('path');

const matrix = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'params', 'matrix.json'), 'utf8'));

// Raw server text for every type, so nothing is lost to JavaScript's parsing.
const raw = { getTypeParser: () => (v) => v };

const KIND = {
  16: 'bool', 20: 'num', 21: 'num', 23: 'num', 700: 'num', 701: 'num', 1700: 'num',
  25: 'str', 1043: 'str', 705: 'str', 19: 'str', 1042: 'str',
  1082: 'date', 1114: 'ts', 1184: 'tstz', 1186: 'interval',
};

// Sluice computes NUMERIC as double precision: numbers compare by value.
function canon(value, oid) {
  if (value === null) return 'NULL';
  const kind = KIND[oid] || `oid${oid}`;
  if (kind === 'num') return `num:${Number(value)}`;
  return `${kind}:${value}`;
}

function oracleConfig(url) {
  // PGDATABASE names Sluice's database; the oracle's is its own.
  const config = { types: raw, database: 'postgres' };
  for (const part of url.trim().split(/\s+/)) {
    const [k, v] = part.split('=');
    config[{ host: 'host', port: 'port', user: 'user', dbname: 'database', password: 'password' }[k]] = v;
  }
  return config;
}

async function run(client, sql, params) {
  try {
    const res = await client.query({ text: sql, values: params.map(([, v]) => v), rowMode: 'array' });
    if (!res.fields || res.fields.length === 0) return ['ok', res.rowCount];
    return ['rows', res.rows.map((row) => row.map((v, i) => canon(v, res.fields[i].dataTypeID)))];
  } catch (e) {
    if (!e.code) throw e;
    return ['error', e.code];
  }
}

async function rows(client, sql) {
  const res = await client.query({ text: sql, rowMode: 'array' });
  return res.rows.map((row) => row.map((v, i) => canon(v, res.fields[i].dataTypeID)));
}

async function setup(client, create) {
  for (const sql of `${matrix.drop};${create};${matrix.rows}`.split(';')) {
    if (sql.trim()) await client.query(sql);
  }
}

(async () => {
  if (!process.env.SLUICE_PG_URL) {
    console.log('FAIL node: param matrix needs SLUICE_PG_URL (a PostgreSQL 15 to compare with)');
    process.exit(1);
  }
  const pg = new Client(oracleConfig(process.env.SLUICE_PG_URL));
  const sl = new Client({ host: '127.0.0.1', port: Number(process.env.PGPORT), user: 'sluice', database: 'sluice', types: raw });
  await pg.connect();
  await sl.connect();
  await pg.query("SET TimeZone = 'UTC'");
  await pg.query('DROP SCHEMA IF EXISTS param_matrix_node CASCADE');
  await pg.query('CREATE SCHEMA param_matrix_node');
  await pg.query('SET search_path = param_matrix_node');
  await setup(pg, matrix.create_postgres);
  await setup(sl, matrix.create_sluice);
  const failures = [];
  for (const c of matrix.cases) {
    const sql = c.sql;
    let want = await run(pg, sql, c.params);
    let got = await run(sl, sql, c.params);
    if (JSON.stringify(want) === JSON.stringify(got) && c.check) {
      want = await rows(pg, c.check);
      got = await rows(sl, c.check);
    }
    if (JSON.stringify(want) !== JSON.stringify(got)) {
      failures.push(`${sql} ${JSON.stringify(c.params)}\n  postgres: ${JSON.stringify(want)}\n  sluice:   ${JSON.stringify(got)}`);
    }
  }
  await pg.query('DROP SCHEMA param_matrix_node CASCADE');
  await pg.end();
  await sl.end();
  failures.forEach((f) => console.log(f));
  if (failures.length) {
    console.log(`FAIL node: param matrix, ${failures.length} of ${matrix.cases.length} cells differ from PostgreSQL`);
    process.exit(1);
  }
  console.log(`ok node: param matrix, ${matrix.cases.length} cells (all parameters unspecified) equal to PostgreSQL`);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
