// scratch: in-process 1-client interleaved raw vs broker
import { startInProcessBroker, type Inject } from './in-process-broker.ts';
import { mysqlTarget } from '../bench/targets/mysql.ts';
import { postgresTarget } from '../bench/targets/postgres.ts';
import { generatePassword } from '../src/util/random.ts';
import { loadavg } from 'node:os';
const isPg = process.argv[2] === 'pg';
const N = Number(process.argv[3] ?? 400);
const target = isPg ? postgresTarget : mysqlTarget;
const broker = await startInProcessBroker();
const { call } = broker;
const root = { ...broker.root, 'content-type': 'application/json' };
const group = `latg${process.pid}`;
const setup = await target.prepare(group);
await call({ method: 'PUT', url: '/v1/database/config/pg', headers: root, payload: JSON.stringify({ ...(await target.connectionConfig()), allowed_roles: '*' }) });
const prefix = `lat${process.pid}`;
await call({ method: 'PUT', url: '/v1/database/roles/r', headers: root, payload: JSON.stringify({ db_name: 'pg', default_ttl: 3600, max_ttl: 7200, username_template: `${prefix}b{{random 12}}`, creation_statements: setup.creationStatements }) });
const creds: Inject = { method: 'GET', url: '/v1/database/creds/r', headers: broker.root };
const direct = await target.openDirect();
const raw: number[] = []; const br: number[] = [];
const G = globalThis as any;
for (let i = 0; i < N + 50; i++) {
  let t = performance.now();
  await direct.createUser(`${prefix}r${i}`, generatePassword(), setup.creationStatements);
  if (i >= 50) raw.push(performance.now() - t);
  G.__T ??= { n: 0, acc: {} }; if (i === 50) G.__T.acc = {};
  t = performance.now(); G.__T.req = t;
  const r = await call(creds);
  if (i >= 50) br.push(performance.now() - t);
  if (!r.data) throw new Error(JSON.stringify(r));
}
const p50 = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]!; };
console.log(`${isPg ? 'pg' : 'mysql'}: raw p50 ${p50(raw).toFixed(2)} broker p50 ${p50(br).toFixed(2)} overhead ${(p50(br) - p50(raw)).toFixed(2)} load ${loadavg()[0]!.toFixed(2)}`);
for (const [k, v] of Object.entries(G.__T.acc as Record<string, number[]>)) console.log(' ', k, p50(v).toFixed(2));
await call({ method: 'PUT', url: '/v1/sys/leases/revoke-prefix/database/creds/r', headers: root, payload: '{}' });
await direct.close();
await target.dropUsers(prefix);
await target.teardown(group);
await broker.close();
