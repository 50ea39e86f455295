// Conformance of the example third-party engine (test/support/example-engine),
// loaded by the broker from the config file's `plugins`: the suite holds for
// engines that are not built in, too.

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createUserStore, access, hashPassword, listAccounts, login, openSession, openStore, sessionAlive, validUntil, type UserStore } from '../support/example-engine/store.ts';
import { runConformance, type ConformanceServer } from './suite.ts';

const ENGINE = resolve(import.meta.dirname, '../support/example-engine/index.ts');

async function start(prefix: string): Promise<ConformanceServer> {
  const dir = mkdtempSync(join(tmpdir(), 'dbroker-example-'));
  const file = join(dir, 'users.db');
  const admin = { username: `${prefix}root`, password: `A-${randomBytes(12).toString('hex')}` };
  createUserStore(file, admin.username, admin.password);
  const db: UserStore = openStore(file);
  const granted = `${prefix}granted`;
  const tryAccess = (creds: { username: string; password: string }, privilege: 'read' | 'write', object: string) => access(db, creds.username, creds.password, privilege, object);
  return {
    admin,
    connectionConfig: (login) => ({ connection_url: file, username: login.username, password: login.password }),
    creationStatements: [`GRANT READ ON ${granted}`],
    canLogin: async (creds) => login(db, creds.username, creds.password),
    readGranted: async (creds) => tryAccess(creds, 'read', granted),
    readOther: async (creds) => tryAccess(creds, 'read', `${prefix}other`),
    writeGranted: async (creds) => tryAccess(creds, 'write', granted),
    listUsers: async () => listAccounts(db),
    async openSession(creds) {
      const id = openSession(db, creds.username, creds.password);
      return { alive: async () => sessionAlive(db, id), close: async () => undefined };
    },
    expiryOf: async (username) => validUntil(db, username),
    async createAdmin(username) {
      const password = `A-${randomBytes(12).toString('hex')}`;
      const { salt, hash } = hashPassword(password);
      db.prepare('INSERT INTO accounts (name, salt, hash, is_admin) VALUES (?, ?, ?, 1)').run(username, salt, hash);
      return { username, password };
    },
    async dropUser(username) {
      db.prepare('DELETE FROM accounts WHERE name = ?').run(username);
    },
    async stop() {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

runConformance({
  name: 'example-users-plugin (third-party engine from the config file)',
  pluginName: 'example-users-plugin',
  maxUsernameLength: 40,
  start,
  brokerConfig: { plugins: { 'example-users-plugin': ENGINE } },
});
