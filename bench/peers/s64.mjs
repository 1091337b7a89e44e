// S64 workload: N single-job enqueues from C concurrent clients, no worker running.
//   node s64.mjs graphile-worker|pg-boss N C        (PB_PG_URL = a fresh database)
// Run it from a copy in $PB_ROOT/node/bench/ so the imports resolve against the
// harness's node_modules (bench/s64_peers.sh does the copy).
// Untimed: schema/queue setup, then the pool is pre-opened to C connections.
// Timed: C async loops share one client object and call the peer's single-job API
// (each call is one committed INSERT, so it is acked only once durable).
// Prints one JSON line {t0, t1, n, clients, pool, conns} (epoch ms; conns = backends
// seen on this database right after the timed part, i.e. how many the pool really opened).
import { makeWorkerUtils, runMigrations, Logger } from 'graphile-worker';
import { PgBoss } from 'pg-boss';

const PG_URL = process.env.PB_PG_URL || 'postgres://postgres@127.0.0.1:55432/postgres';
const [peer, nStr, cStr] = process.argv.slice(2);
const N = Number(nStr), C = Number(cStr);
if (!['graphile-worker', 'pg-boss'].includes(peer) || !(N > 0) || !(C > 0)) {
  console.error('usage: node s64.mjs graphile-worker|pg-boss N C');
  process.exit(2);
}

// Same clock and ~100-byte payload as the harness (node/common.mjs), kind 's'.
const now = () => performance.timeOrigin + performance.now();
const PAD = 'x'.repeat(48);
const payload = (i) => ({ i, k: 's', ts: now(), pad: PAD });
const COUNT_CONNS = 'select count(*)::int as n from pg_stat_activity where datname = current_database()';

// api = { single(p), query(sql) -> rows, close() }
let api;
if (peer === 'graphile-worker') {
  const logger = new Logger(() => (level, message) => {
    if (level === 'error' || level === 'warning') console.error(`[${level}] ${message}`);
  });
  await runMigrations({ connectionString: PG_URL, logger });
  // WorkerUtils' pg.Pool size is SharedOptions.maxPoolSize (default 10).
  const utils = await makeWorkerUtils({ connectionString: PG_URL, maxPoolSize: C, logger });
  api = {
    single: (p) => utils.addJob('noop', p),
    query: (sql) => utils.withPgClient(async (c) => (await c.query(sql)).rows),
    close: () => utils.release(),
  };
} else {
  // Same producer settings as the harness's pg_boss.mjs; `max` is passed to pg.Pool (default 10).
  // useListenNotify opens one extra LISTEN connection outside the pool.
  const boss = new PgBoss({ connectionString: PG_URL, useListenNotify: true, supervise: false, schedule: false, max: C });
  boss.on('error', (e) => console.error('[pg-boss error]', e.message || e));
  await boss.start();
  await boss.createQueue('bench', { notify: true });
  const db = boss.getDb();
  api = {
    single: (p) => boss.send('bench', p),
    query: async (sql) => (await db.executeSql(sql)).rows,
    close: () => boss.stop({ graceful: false, wait: true }),
  };
}

// Untimed warm-up: C overlapping queries make the pool open all C connections now,
// so connection set-up is not inside the timed part.
await Promise.all(Array.from({ length: C }, () => api.query('select pg_sleep(0.05)')));

// Timed: C loops pull job numbers from a shared counter until N are sent.
let next = 0;
const loop = async () => {
  for (let i = next++; i < N; i = next++) await api.single(payload(i));
};
const t0 = now();
await Promise.all(Array.from({ length: C }, loop));
const t1 = now();

const conns = (await api.query(COUNT_CONNS))[0].n;
await api.close();
console.log(JSON.stringify({ t0, t1, n: N, clients: C, pool: C, conns }));
