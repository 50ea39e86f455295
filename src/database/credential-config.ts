// `credential_config` of dynamic and static roles: Vault's settings for the
// role's credential_type. dbroker has only credential_type "password" with its
// built-in generator, so no setting can apply; any is refused by name.

import { errors } from '../errors.ts';

/**
 * Schema of credential_config: Vault's TypeKVPairs (an object, or "k=v"
 * strings); checkCredentialConfig refuses any setting in it.
 */
export const credentialConfig = {
  anyOf: [
    { type: 'object', maxProperties: 16 },
    { type: 'string', maxLength: 1024 },
    { type: 'array', maxItems: 16, items: { type: 'string', maxLength: 1024 } },
  ],
} as const;

/**
 * Refuse (400 naming the setting) a credential_config that sets anything:
 * for credential_type "password" Vault applies `password_policy` here
 * (builtin/logical/database/path_roles.go, setCredentialConfig), and dbroker
 * has no password policies. Empty (absent, {}, "" or []) is accepted.
 */
export function checkCredentialConfig(value: unknown): void {
  if (value === undefined || value === null) return;
  let keys: string[];
  if (typeof value === 'string') keys = value.trim() === '' ? [] : [value.split('=')[0]!.trim()];
  else if (Array.isArray(value)) keys = value.filter((v) => typeof v === 'string' && v.trim() !== '').map((v) => String(v).split('=')[0]!.trim());
  else keys = Object.keys(value as Record<string, unknown>);
  const key = keys[0];
  if (key === undefined) return;
  const why =
    key === 'password_policy'
      ? 'dbroker has no password policies (no sys/policies/password endpoint); every credential gets the built-in generator\'s password'
      : 'credential_type "password" takes no settings in dbroker';
  throw errors.BAD_FIELD(`credential_config.${key.slice(0, 64)}`, `is not supported: ${why}; leave credential_config empty`);
}
