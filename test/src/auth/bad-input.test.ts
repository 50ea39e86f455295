// Bad input on every auth-method route: each field with wrong types, huge
// values, nulls and negatives, and every HTTP method (HEAD included). The
// answer is a 4xx with a message (naming the field when it is about one),
// never a 500, never a token, and the broker keeps serving.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { initAndUnseal, startBroker, type BrokerProcess } from '../../support/broker.ts';

let broker: BrokerProcess;
let root: string;

before(async () => {
  broker = await startBroker();
  ({ rootToken: root } = await initAndUnseal(broker));
  for (const [path, type] of [['approle', 'approle'], ['jwt', 'jwt'], ['kubernetes', 'kubernetes'], ['userpass', 'userpass']]) {
    assert.equal((await broker.api('PUT', `sys/auth/${path}`, { token: root, body: { type } })).status, 204);
  }
  assert.equal((await broker.api('PUT', 'auth/approle/role/r', { token: root, body: { token_policies: 'default' } })).status, 204);
  assert.equal((await broker.api('PUT', 'auth/userpass/users/u', { token: root, body: { password: 'pw' } })).status, 204);
  assert.equal((await broker.api('PUT', 'auth/kubernetes/config', { token: root, body: { kubernetes_host: 'http://127.0.0.1:1' } })).status, 204);
  assert.equal((await broker.api('PUT', 'auth/kubernetes/role/k', { token: root, body: { bound_service_account_names: 'a', bound_service_account_namespaces: 'b' } })).status, 204);
});

after(async () => {
  await broker?.stop();
  broker?.remove();
});

const routes: Record<string, string[]> = {
  'sys/auth/x': ['type', 'description', 'config', 'options', 'local', 'seal_wrap', 'plugin_name'],
  'sys/auth/approle/tune': ['default_lease_ttl', 'max_lease_ttl', 'description', 'listing_visibility', 'options', 'token_type'],
  'auth/approle/role/r': ['token_policies', 'token_ttl', 'token_max_ttl', 'token_num_uses', 'token_bound_cidrs', 'token_period', 'bind_secret_id', 'secret_id_ttl', 'secret_id_num_uses', 'secret_id_bound_cidrs', 'role_id', 'token_type'],
  'auth/approle/role/r/role-id': ['role_id'],
  'auth/approle/role/r/secret-id': ['metadata', 'cidr_list', 'token_bound_cidrs', 'num_uses', 'ttl'],
  'auth/approle/role/r/custom-secret-id': ['secret_id', 'metadata'],
  'auth/approle/role/r/secret-id/lookup': ['secret_id'],
  'auth/approle/role/r/secret-id/destroy': ['secret_id'],
  'auth/approle/role/r/secret-id-accessor/lookup': ['secret_id_accessor'],
  'auth/approle/role/r/secret-id-accessor/destroy': ['secret_id_accessor'],
  'auth/approle/login': ['role_id', 'secret_id'],
  'auth/jwt/config': ['oidc_discovery_url', 'jwks_url', 'jwt_validation_pubkeys', 'bound_issuer', 'jwt_supported_algs', 'default_role', 'jwks_ca_pem'],
  'auth/jwt/role/j': ['role_type', 'bound_audiences', 'user_claim', 'bound_subject', 'bound_claims', 'bound_claims_type', 'claim_mappings', 'groups_claim', 'clock_skew_leeway', 'expiration_leeway', 'not_before_leeway', 'token_policies'],
  'auth/jwt/login': ['role', 'jwt'],
  'auth/kubernetes/config': ['kubernetes_host', 'kubernetes_ca_cert', 'token_reviewer_jwt', 'pem_keys', 'issuer', 'disable_iss_validation', 'disable_local_ca_jwt'],
  'auth/kubernetes/role/k': ['bound_service_account_names', 'bound_service_account_namespaces', 'audience', 'alias_name_source', 'token_ttl'],
  'auth/kubernetes/login': ['role', 'jwt'],
  // Before the user routes: '-1h' is a fine password, and those set it.
  'auth/userpass/login/u': ['password'],
  'auth/userpass/users/u': ['password', 'token_policies', 'token_bound_cidrs', 'token_ttl'],
  'auth/userpass/users/u/password': ['password'],
  'auth/userpass/users/u/policies': ['token_policies', 'policies'],
  'auth/token/roles/t': ['allowed_policies', 'disallowed_policies', 'orphan', 'renewable', 'path_suffix', 'token_period', 'token_explicit_max_ttl', 'token_bound_cidrs'],
  'auth/token/create/t': ['policies', 'ttl', 'num_uses', 'meta', 'period'],
  'auth/token/revoke-orphan': ['token'],
};

const BAD_VALUES: unknown[] = [{}, { nested: { deep: [1, 2] } }, [], [1, {}], 12345, -1, 1e300, true, null, 'x'.repeat(70000), '\u0000\ud800', '-1h'];

test('wrong types and sizes for every field of every route: 4xx with a message, never 500, never a token', async () => {
  let checked = 0;
  for (const [path, fields] of Object.entries(routes)) {
    for (const field of fields) {
      for (const value of BAD_VALUES) {
        const r = await broker.api('PUT', path, { token: root, body: { [field]: value } });
        assert.ok(r.status < 500, `${path} ${field}=${JSON.stringify(value)?.slice(0, 40)}: ${r.status} ${r.text.slice(0, 200)}`);
        if (r.status >= 400) assert.ok(Array.isArray(r.body?.errors) && r.body.errors[0].length > 0, `${path}: an error message`);
        if (path.includes('/login')) assert.ok(!(r.body?.auth?.client_token), `${path} ${field}: never a token from bad input`);
        checked++;
      }
    }
  }
  assert.ok(checked > 1000, String(checked));
  // Still serving, and the objects are intact.
  assert.equal((await broker.api('GET', 'auth/approle/role/r', { token: root })).status, 200);
  assert.equal((await broker.api('GET', 'sys/health')).status, 200);
});

test('every method on every route, HEAD included: no 500', async () => {
  for (const path of [...Object.keys(routes), 'sys/auth', 'auth/approle/role', 'auth/userpass/users', 'auth/jwt/role', 'auth/token/roles', 'auth/token/accessors', 'auth/jwt/oidc/auth_url', 'auth/jwt/oidc/callback']) {
    for (const method of ['GET', 'HEAD', 'DELETE', 'PATCH', 'OPTIONS']) {
      const r = await broker.api(method, path, { token: root });
      assert.ok(r.status < 500, `${method} ${path}: ${r.status} ${r.text.slice(0, 200)}`);
    }
    const list = await broker.api('GET', `${path}?list=true`, { token: root });
    assert.ok(list.status < 500, `LIST ${path}: ${list.status}`);
    const noToken = await broker.api('PUT', path, { body: {} });
    assert.ok(noToken.status < 500, `no token ${path}`);
  }
  // Login routes with a non-object body and malformed JSON.
  for (const path of ['auth/approle/login', 'auth/jwt/login', 'auth/kubernetes/login', 'auth/userpass/login/u']) {
    assert.equal((await broker.api('PUT', path, { rawBody: '[1,2]' })).status, 400);
    assert.equal((await broker.api('PUT', path, { rawBody: '{"role_id":' })).status, 400);
  }
});
