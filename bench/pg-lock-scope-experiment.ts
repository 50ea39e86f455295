// The experiment behind plugins/postgres/lock-scope.ts (a measurement, never
// a test): without any lock, 8 sessions each create 60 roles, one
// transaction per role (CREATE ROLE; then either GRANT <group> TO role, or
// GRANT SELECT ON <one table> TO role), then drop them concurrently, 5 roles
// per DROP ROLE (with DROP OWNED first for the table case) of those created. Prints the errors
// seen by kind: membership grants are expected to see none, table grants
// "tuple concurrently updated". On the server at DBROKER_TEST_PG_URL
// (default the local trust server); everything it makes is dropped.
//
//   node --import tsx bench/pg-lock-scope-experiment.ts

import { randomBytes } from 'node:crypto';
import pg from 'pg';

const URL_TEXT = process.env.DBROKER_TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const SESSIONS = 8;
const PER_SESSION = 60;
const DROP_LIST = 5;

async function open(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: URL_TEXT });
  await client.connect();
  return client;
}

async function trial(mode: 'group' | 'table'): Promise<void> {
  const tag = `lx${randomBytes(3).toString('hex')}`;
  const admin = await open();
  await admin.query(`CREATE ROLE ${tag}_grp NOLOGIN; CREATE TABLE ${tag}_t (v int)`);
  const errors = new Map<string, number>();
  const note = (err: unknown): void => {
    const e = err as { code?: string; message?: string };
    const key = `${e.code} ${(e.message ?? '').replace(/"[^"]*"/g, '"…"')}`;
    errors.set(key, (errors.get(key) ?? 0) + 1);
  };
  const name = (s: number, i: number): string => `${tag}_u${s}_${i}`;
  const grant = mode === 'group' ? `GRANT ${tag}_grp TO` : `GRANT SELECT ON ${tag}_t TO`;

  const inSessions = (work: (c: pg.Client, s: number) => Promise<void>): Promise<void[]> =>
    Promise.all(
      Array.from({ length: SESSIONS }, async (_, s) => {
        const c = await open();
        try {
          await work(c, s);
        } finally {
          await c.end();
        }
      }),
    );
  const attempt = async (c: pg.Client, statements: string[]): Promise<boolean> => {
    try {
      await c.query('BEGIN');
      for (const statement of statements) await c.query(statement);
      await c.query('COMMIT');
      return true;
    } catch (err) {
      note(err);
      await c.query('ROLLBACK').catch(() => undefined);
      return false;
    }
  };
  const made: string[][] = Array.from({ length: SESSIONS }, () => []);

  let start = performance.now();
  await inSessions(async (c, s) => {
    for (let i = 0; i < PER_SESSION; i++) {
      if (await attempt(c, [`CREATE ROLE ${name(s, i)} LOGIN`, `${grant} ${name(s, i)}`])) made[s]!.push(name(s, i));
    }
  });
  const created = SESSIONS * PER_SESSION;
  console.log(`${mode}: ${created} × (CREATE ROLE; ${grant} role) in ${SESSIONS} sessions, ${(performance.now() - start).toFixed(0)} ms, failed:`, Object.fromEntries(errors));
  errors.clear();

  start = performance.now();
  await inSessions(async (c, s) => {
    for (let i = 0; i < made[s]!.length; i += DROP_LIST) {
      const list = made[s]!.slice(i, i + DROP_LIST).join(', ');
      await attempt(c, [...(mode === 'table' ? [`DROP OWNED BY ${list}`] : []), `DROP ROLE IF EXISTS ${list}`]);
    }
  });
  const drops = made.reduce((sum, m) => sum + Math.ceil(m.length / DROP_LIST), 0);
  console.log(`${mode}: ${drops} concurrent ${mode === 'table' ? 'DROP OWNED + ' : ''}DROP ROLE of up to ${DROP_LIST} roles (those created), ${(performance.now() - start).toFixed(0)} ms, failed:`, Object.fromEntries(errors));

  const { rows } = await admin.query<{ rolname: string }>(`SELECT rolname FROM pg_roles WHERE rolname LIKE $1 AND rolname <> $2`, [`${tag}_%`, `${tag}_grp`]);
  for (const { rolname } of rows) await admin.query(`DROP OWNED BY ${rolname}; DROP ROLE ${rolname}`);
  await admin.query(`DROP OWNED BY ${tag}_grp; DROP ROLE ${tag}_grp; DROP TABLE ${tag}_t`);
  await admin.end();
}

const version = await open();
console.log((await version.query<{ v: string }>('SELECT version() AS v')).rows[0]?.v);
await version.end();
await trial('group');
await trial('table');
