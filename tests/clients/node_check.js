// node-postgres against a running Sluice: a parameterised query, asserting rows.
const { Client } = require('pg');
const assert = require('assert');

(async () => {
  const client = new Client({ host: '127.0.0.1', port: Number(process.env.PGPORT), user: 'sluice', database: 'sluice' });
  await client.connect();
  const res = await client.query(
    'SELECT item, count(*)::int AS n, sum(amount) AS total FROM orders WHERE restaurant_id = $1 GROUP BY item ORDER BY item',
    [7],
  );
  assert.deepStrictEqual(res.rows, [
    { item: 'pizza', n: 2, total: 25 },
    { item: 'soup', n: 1, total: 7.5 },
  ]);
  const named = await client.query({ name: 'by-item', text: 'SELECT count(*) AS c FROM orders WHERE item = $1', values: ['pizza'] });
  assert.strictEqual(named.rows[0].c, '3');
  await client.end();
  console.log('ok node: parameterised query, named prepared statement');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
