// sys/policies/acl/:name: ACL policies as Vault HCL or JSON.

import type { Broker } from '../broker.ts';
import { errors } from '../errors.ts';
import type { Route } from '../http/route.ts';
import { object } from '../http/schema.ts';
import { DEFAULT_POLICY, parsePolicy } from '../auth/policy.ts';

const POLICY_NAME = /^[A-Za-z0-9_.-]{1,128}$/;

export function policyRoutes(broker: Broker): Route[] {
  const entry = (name: string): string => `sys/policy/${name}`;
  const checkName = (name: string): string => {
    const n = name.toLowerCase();
    if (!POLICY_NAME.test(n)) throw errors.BAD_FIELD('name', 'may contain only letters, digits, "_", "." and "-"');
    return n;
  };
  const list: Route = {
    methods: ['LIST', 'GET'],
    pattern: 'sys/policies/acl',
    auth: 'token',
    async handler() {
      const names = (await broker.storage.listEntries('sys/policy/')).map((p) => p.slice('sys/policy/'.length));
      return { data: { keys: ['default', 'root', ...names].sort() } };
    },
  };
  const one: Route = {
    methods: ['GET', 'PUT', 'DELETE'],
    pattern: 'sys/policies/acl/:name',
    auth: 'token',
    schema: object({ policy: { type: 'string', minLength: 1, maxLength: 1048576 } }, ['policy']),
    async handler(ctx) {
      const name = checkName(ctx.params.name!);
      if (ctx.method === 'GET') {
        if (name === 'root') return { data: { name, policy: '' } };
        const text = name === 'default' ? DEFAULT_POLICY : await broker.readPolicy(name);
        if (text === undefined) throw errors.ENTRY_NOT_FOUND(ctx.path);
        return { data: { name, policy: text } };
      }
      if (name === 'root' || name === 'default') throw errors.BAD_FIELD('name', `cannot change the built-in "${name}" policy`);
      if (ctx.method === 'DELETE') {
        await broker.storage.deleteEntry(entry(name));
      } else {
        let text = ctx.body.policy as string;
        // Vault accepts the policy base64-encoded as well.
        if (!/path\s|"path"/.test(text) && /^[A-Za-z0-9+/=\s]+$/.test(text)) {
          const decoded = Buffer.from(text, 'base64').toString('utf8');
          if (/path\s|"path"/.test(decoded)) text = decoded;
        }
        parsePolicy(text);
        await broker.writeEntry(entry(name), { policy: text });
      }
      broker.invalidatePolicy(name);
      return undefined;
    },
  };
  return [list, one];
}
