// scratch: 1-client latency decomposition against a real broker process
import { BenchBroker } from '../bench/bench-broker.ts';
import { mysqlTarget } from '../bench/targets/mysql.ts';
import { postgresTarget } from '../bench/targets/postgres.ts';
import { generatePassword } from '../src/util/random.ts';
import { loadavg } from 'node:os';

const target = process.argv[2] === 'pg' ? postgresTarget : mysqlTarget;
const N = Number(process.argv[3] ?? 300);
const bench = await BenchBroker.start(target);
const group = `latg${process.pid}`;
const setup = await target.prepare(group);
await bench.writeRole('r', { statements: setup.creationStatements, usernamePrefix: `lat${process.pid}b`, defaultTtl: 3600, maxTtl: 7200 });
const client = bench.client(1);
const direct = await target.openDirect();
const p50 = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]!; };
async function time(n: number, f: (i: number) => Promise<unknown>) { const out: number[] = []; for (let i = 0; i < n; i++) { const t = performance.now(); await f(i); out.push(performance.now() - t); } return out; }
let k = 0;
for (let round = 0; round < 3; round++) {
  const raw = await time(N, () => direct.createUser(`lat${process.pid}r${k++}`, generatePassword(), setup.creationStatements));
  const creds = await time(N, () => bench.issue(client, 'r'));
  const self = await time(N, () => client.expect(200, 'GET', '/v1/auth/token/lookup-self', { token: bench.token }));
  const health = await time(N, () => client.request('GET', '/v1/sys/health'));
  console.log(`round ${round}: raw ${p50(raw).toFixed(2)} creds ${p50(creds).toFixed(2)} (+${(p50(creds) - p50(raw)).toFixed(2)}) lookup-self ${p50(self).toFixed(2)} health ${p50(health).toFixed(2)} load ${loadavg()[0]!.toFixed(2)}`);
}
client.close();
await direct.close();
await bench.expect(204, 'PUT', 'sys/leases/revoke-prefix/database/creds/r', {}, 200);
await target.dropUsers(`lat${process.pid}`);
await target.teardown(group);
await bench.close();
