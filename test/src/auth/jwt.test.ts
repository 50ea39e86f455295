// JWT/OIDC auth over real HTTP against a real broker, with real crypto: the
// issuer (discovery document and JWKS, keys from jose) is served by this test
// over HTTP. Covers config validation, role fields, a successful login and
// its auth block, end to end to database/creds, the negative table (each
// refused with 400/403 and a clear message, never a token), key rotation at
// the issuer without a restart, OIDC discovery, and PEM keys.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { assertCredsByPolicy, setupDatabase } from '../../support/auth.ts';
import { JwtIssuer, newKey, selfSignedCert, type IssuerKey } from '../../support/jwt-issuer.ts';
import { dropRolesWithPrefix, startPgBroker, tag, type PgBroker } from '../../support/pg-broker.ts';
import { trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';

let pb: PgBroker;
let server: TestPostgres;
const issuer = new JwtIssuer();
let k1: IssuerKey;
let k2: IssuerKey;
let stranger: IssuerKey;
let ec: IssuerKey;
const prefix = `jw${tag()}`;
const seenJwts: string[] = [];

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');

before(async () => {
  [k1, k2, stranger, ec] = await Promise.all([newKey('k1'), newKey('k2'), newKey('k1'), newKey('ec1', 'ES256')]);
  await issuer.start();
  issuer.published = [k1];
  server = await trustPostgres();
  pb = await startPgBroker({ config: { default_lease_ttl: '1h', max_lease_ttl: '4h' } });
  await setupDatabase(pb, server, prefix);
  assert.equal((await pb.api('PUT', 'sys/auth/jwt', { type: 'jwt' })).status, 204);
  const c = await pb.api('PUT', 'auth/jwt/config', { jwks_url: `${issuer.url}/jwks`, bound_issuer: issuer.url, jwt_supported_algs: ['RS256'] });
  assert.equal(c.status, 204, c.text);
  const r = await pb.api('PUT', 'auth/jwt/role/ci', {
    role_type: 'jwt',
    bound_audiences: ['dbroker'],
    user_claim: 'sub',
    bound_claims_type: 'glob',
    bound_claims: { project: ['payments/*', 'billing'] },
    claim_mappings: { ref: 'git_ref', '/ci/pipeline': 'pipeline' },
    token_policies: ['dbuser'],
    token_ttl: '10m',
    token_max_ttl: '20m',
  });
  assert.equal(r.status, 204, r.text);
});

after(async () => {
  await pb?.close();
  await issuer.stop();
  await dropRolesWithPrefix(server, prefix);
  await server?.stop();
});

const login = (jwt: string, role = 'ci', mount = 'jwt') => {
  seenJwts.push(jwt);
  return pb.broker.api('PUT', `auth/${mount}/login`, { body: { role, jwt } });
};
const good = { sub: 'deploy-bot', aud: 'dbroker', project: 'payments/api', ref: 'refs/heads/main', ci: { pipeline: 42 } };

test('config and role: read back in Vault shape; bad or unsupported fields are 400s naming the field', async () => {
  const c = await pb.api('GET', 'auth/jwt/config');
  assert.equal(c.status, 200);
  assert.equal(c.body.data.jwks_url, `${issuer.url}/jwks`);
  assert.deepEqual(c.body.data.jwt_supported_algs, ['RS256']);
  const r = await pb.api('GET', 'auth/jwt/role/ci');
  assert.equal(r.status, 200);
  assert.deepEqual(r.body.data.bound_audiences, ['dbroker']);
  assert.deepEqual(r.body.data.bound_claims, { project: ['payments/*', 'billing'] });
  assert.equal(r.body.data.bound_claims_type, 'glob');
  assert.equal(r.body.data.clock_skew_leeway, 60);
  assert.equal(r.body.data.expiration_leeway, 150);
  assert.equal(r.body.data.token_ttl, 600);

  assert.equal((await pb.api('PUT', 'sys/auth/other-jwt', { type: 'jwt' })).status, 204);
  const badConfigs: Array<[Record<string, unknown>, RegExp]> = [
    [{ jwks_url: `${issuer.url}/jwks`, jwt_validation_pubkeys: [k1.spki] }, /exactly one of/],
    [{}, /exactly one of/],
    [{ jwks_url: `${issuer.url}/nothing` }, /jwks_url.*cannot fetch/],
    [{ jwks_url: `${issuer.url}/jwks`, jwt_supported_algs: ['HS256'] }, /jwt_supported_algs.*HS256/],
    [{ jwks_url: `${issuer.url}/jwks`, jwt_supported_algs: ['none'] }, /jwt_supported_algs/],
    [{ jwt_validation_pubkeys: ['not a key'] }, /jwt_validation_pubkeys/],
    [{ jwks_url: `${issuer.url}/jwks`, oidc_client_id: 'abc' }, /oidc_client_id.*oidc_discovery_url/],
    [{ oidc_discovery_url: issuer.url, oidc_client_id: 'abc', oidc_response_mode: 'form_post' }, /field "oidc_response_mode" is not supported/],
    [{ oidc_discovery_url: issuer.url, oidc_client_id: 'abc', oidc_response_types: 'id_token' }, /field "oidc_response_types" is not supported/],
    [{ jwks_url: `${issuer.url}/jwks`, jwks_pairs: [{}] }, /field "jwks_pairs" is not supported/],
  ];
  for (const [body, message] of badConfigs) {
    const w = await pb.api('PUT', 'auth/other-jwt/config', body);
    assert.equal(w.status, 400, `${JSON.stringify(body)}: ${w.text}`);
    assert.match(w.body.errors[0], message);
  }
  assert.equal((await pb.api('GET', 'auth/other-jwt/config')).status, 404, 'nothing stored');
  const badRoles: Array<[Record<string, unknown>, RegExp]> = [
    [{ user_claim: 'sub', bound_audiences: 'x' }, /allowed_redirect_uris.*must be set if "role_type" is "oidc" or unspecified/],
    [{ role_type: 'jwt', user_claim: 'sub' }, /at least one bound constraint/],
    [{ role_type: 'jwt', bound_audiences: 'x' }, /user_claim/],
    [{ role_type: 'magic', user_claim: 'sub', bound_audiences: 'x' }, /role_type/],
    [{ role_type: 'oidc', user_claim: 'sub', allowed_redirect_uris: ['not a url'] }, /allowed_redirect_uris/],
    [{ role_type: 'jwt', user_claim: 'sub', bound_audiences: 'x', max_age: 60 }, /field "max_age" is not supported/],
    [{ role_type: 'jwt', user_claim: 'sub', bound_audiences: 'x', bound_claims: { a: { nested: 1 } } }, /bound_claims\.a/],
    [{ role_type: 'jwt', user_claim: 'sub', bound_audiences: 'x', token_type: 'batch' }, /token_type/],
  ];
  for (const [body, message] of badRoles) {
    const w = await pb.api('PUT', 'auth/jwt/role/bad', body);
    assert.equal(w.status, 400, `${JSON.stringify(body)}: ${w.text}`);
    assert.match(w.body.errors[0], message);
  }
  assert.equal((await pb.api('PUT', 'auth/jwt/oidc/auth_url', { role: 'ci', redirect_uri: 'http://x' })).status, 400);
});

test('login: Vault\'s auth block, claim mappings in metadata, display name jwt-<sub>, creds by policy', async () => {
  const jwt = await issuer.sign(k1, good);
  const r = await login(jwt);
  assert.equal(r.status, 200, r.text);
  const auth = r.body.auth;
  assert.match(auth.client_token, /^hvs\./);
  assert.deepEqual(auth.policies, ['dbuser', 'default']);
  assert.deepEqual(auth.token_policies, ['dbuser', 'default']);
  assert.deepEqual(auth.metadata, { role: 'ci', git_ref: 'refs/heads/main', pipeline: '42' });
  assert.equal(auth.lease_duration, 600);
  assert.equal(auth.renewable, true);
  const self = await pb.broker.api('GET', 'auth/token/lookup-self', { token: auth.client_token });
  assert.equal(self.body.data.display_name, 'jwt-deploy-bot');
  assert.equal(self.body.data.path, 'auth/jwt/login');
  await assertCredsByPolicy(pb, server, auth.client_token, prefix, 'jwt-deploy-bot');
  // The other glob value, exact.
  assert.equal((await login(await issuer.sign(k1, { ...good, project: 'billing' }))).status, 200);
});

test('negative table: each refused with a clear 400/403, never a 500, never a token', async () => {
  const now = Math.floor(Date.now() / 1000);
  const header = b64({ alg: 'RS256', kid: 'k1' });
  const payload = b64({ ...good, iss: issuer.url, iat: now, exp: now + 300 });
  const hsHeader = b64({ alg: 'HS256', kid: 'k1', typ: 'JWT' });
  const hsWithPublicKey = `${hsHeader}.${payload}.${createHmac('sha256', k1.spki).update(`${hsHeader}.${payload}`).digest('base64url')}`;
  const cases: Array<[string, string | Promise<string>, number, RegExp]> = [
    ['expired (past exp + leeways)', issuer.sign(k1, { ...good, exp: now - 600, iat: now - 900 }), 400, /expired/],
    ['not yet valid', issuer.sign(k1, { ...good, nbf: now + 600 }), 400, /not yet valid/],
    ['no exp', issuer.sign(k1, { ...good, exp: undefined }), 400, /"exp"/],
    ['wrong aud', issuer.sign(k1, { ...good, aud: 'someone-else' }), 400, /audience/],
    ['wrong iss', issuer.sign(k1, { ...good, iss: 'https://evil.example' }), 400, /issuer/],
    ['alg none', `${b64({ alg: 'none' })}.${payload}.`, 400, /algorithm|invalid/],
    ['HS256 signed with the public key', hsWithPublicKey, 400, /algorithm/],
    ['ES256 when only RS256 is allowed', issuer.sign(ec, good), 400, /algorithm/],
    ['unknown kid', issuer.sign(stranger, good, { kid: 'ghost' }), 400, /no key matches/],
    ['right kid, wrong key', issuer.sign(stranger, good), 400, /signature/],
    ['tampered payload', `${header}.${b64({ ...good, sub: 'admin', exp: now + 300 })}.${(await issuer.sign(k1, good)).split('.')[2]}`, 400, /signature/],
    ['bound claim mismatch', issuer.sign(k1, { ...good, project: 'other/api' }), 403, /bound_claims/],
    ['bound claim missing', issuer.sign(k1, { ...good, project: undefined }), 403, /bound_claims/],
    ['no user claim', issuer.sign(k1, { ...good, sub: undefined }), 400, /claim "sub" not found/],
    ['malformed: two parts', 'abc.def', 400, /malformed/],
    ['malformed: garbage header', '!!!.###.$$$', 400, /malformed/],
    ['malformed: JSON header but no signature', `${header}.${payload}`, 400, /malformed/],
  ];
  for (const [what, jwtOrPromise, status, message] of cases) {
    const r = await login(await jwtOrPromise);
    assert.equal(r.status, status, `${what}: ${r.text}`);
    assert.equal(r.body.auth, undefined, `${what}: no token`);
    assert.match(r.body.errors[0], message, what);
  }
  const missingRole = await login(await issuer.sign(k1, good), 'nope');
  assert.equal(missingRole.status, 400);
  assert.match(missingRole.body.errors[0], /role "nope"/);
  // The reasons are logged; the tokens are not.
  assert.ok(pb.broker.logs.includes('the JWT audience'));
  for (const jwt of seenJwts) assert.ok(!pb.broker.logs.includes(jwt), 'no JWT in the broker log');
});

test('key rotation at the issuer: new keys work without a restart, removed keys stop working', async () => {
  assert.equal((await login(await issuer.sign(k1, good))).status, 200);
  const before = issuer.jwksFetches;
  issuer.published = [k2];
  // The refresh on an unknown kid is rate-limited (2 s per mount).
  await new Promise((r) => setTimeout(r, 2100));
  const withNew = await login(await issuer.sign(k2, good));
  assert.equal(withNew.status, 200, withNew.text);
  assert.equal(issuer.jwksFetches, before + 1, 'one refetch for the unknown kid');
  const withOld = await login(await issuer.sign(k1, good));
  assert.equal(withOld.status, 400, withOld.text);
  assert.match(withOld.body.errors[0], /no key matches/);
  // A burst of unknown kids does not hammer the issuer.
  const burst = await Promise.all(Array.from({ length: 10 }, async () => login(await issuer.sign(stranger, good, { kid: 'ghost' }))));
  assert.ok(burst.every((r) => r.status === 400));
  assert.ok(issuer.jwksFetches <= before + 2, `fetches: ${issuer.jwksFetches - before}`);
  issuer.published = [k1, k2];
});

test('OIDC discovery (type oidc) and jwt_validation_pubkeys', async () => {
  assert.equal((await pb.api('PUT', 'sys/auth/oidc', { type: 'oidc' })).status, 204);
  issuer.issuerOverride = 'https://not-this-url.example';
  const mismatch = await pb.api('PUT', 'auth/oidc/config', { oidc_discovery_url: issuer.url });
  assert.equal(mismatch.status, 400);
  assert.match(mismatch.body.errors[0], /oidc_discovery_url.*issuer/);
  issuer.issuerOverride = undefined;
  assert.equal((await pb.api('PUT', 'auth/oidc/config', { oidc_discovery_url: issuer.url, default_role: 'svc' })).status, 204);
  assert.equal((await pb.api('PUT', 'auth/oidc/role/svc', { role_type: 'jwt', user_claim: 'sub', bound_subject: 'svc-1', token_policies: 'dbuser' })).status, 204);
  const ok = await pb.broker.api('PUT', 'auth/oidc/login', { body: { jwt: await issuer.sign(k1, { sub: 'svc-1' }) } });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.body.auth.mount_type, 'oidc');
  const wrongSub = await pb.broker.api('PUT', 'auth/oidc/login', { body: { jwt: await issuer.sign(k1, { sub: 'svc-2' }) } });
  assert.equal(wrongSub.status, 403);
  // The discovered issuer is enforced.
  const otherIss = await pb.broker.api('PUT', 'auth/oidc/login', { body: { jwt: await issuer.sign(k1, { sub: 'svc-1', iss: 'https://x.example' }) } });
  assert.equal(otherIss.status, 400);

  assert.equal((await pb.api('PUT', 'sys/auth/pem', { type: 'jwt' })).status, 204);
  assert.equal((await pb.api('PUT', 'auth/pem/config', { jwt_validation_pubkeys: [k1.spki, ec.spki] })).status, 204);
  assert.equal((await pb.api('PUT', 'auth/pem/role/r', { role_type: 'jwt', user_claim: 'sub', bound_audiences: 'dbroker', token_policies: 'dbuser' })).status, 204);
  assert.equal((await login(await issuer.sign(k1, good), 'r', 'pem')).status, 200, 'a token with a kid, PEM keys without one');
  assert.equal((await login(await issuer.sign(ec, good, { kid: null }), 'r', 'pem')).status, 200, 'EC key without kid');
  const notOurs = await login(await issuer.sign(k2, good, { kid: null }), 'r', 'pem');
  assert.equal(notOurs.status, 400);
  assert.match(notOurs.body.errors[0], /signature/);
});

test('an issuer over HTTPS with a private CA: jwks_ca_pem and oidc_discovery_ca_pem', async () => {
  const tls = selfSignedCert();
  const secure = new JwtIssuer(tls);
  await secure.start();
  secure.published = [k2];
  try {
    assert.equal((await pb.api('PUT', 'sys/auth/tls-jwks', { type: 'jwt' })).status, 204);
    const untrusted = await pb.api('PUT', 'auth/tls-jwks/config', { jwks_url: `${secure.url}/jwks` });
    assert.equal(untrusted.status, 400, 'a certificate from an unknown CA is refused');
    assert.match(untrusted.body.errors[0], /jwks_url/);
    assert.equal((await pb.api('PUT', 'auth/tls-jwks/config', { jwks_url: `${secure.url}/jwks`, jwks_ca_pem: tls.cert })).status, 204);
    assert.equal((await pb.api('PUT', 'auth/tls-jwks/role/r', { role_type: 'jwt', user_claim: 'sub', bound_audiences: 'dbroker', token_policies: 'dbuser' })).status, 204);
    assert.equal((await login(await secure.sign(k2, good), 'r', 'tls-jwks')).status, 200);

    assert.equal((await pb.api('PUT', 'sys/auth/tls-oidc', { type: 'oidc' })).status, 204);
    assert.equal((await pb.api('PUT', 'auth/tls-oidc/config', { oidc_discovery_url: secure.url })).status, 400);
    assert.equal((await pb.api('PUT', 'auth/tls-oidc/config', { oidc_discovery_url: secure.url, oidc_discovery_ca_pem: tls.cert })).status, 204);
    assert.equal((await pb.api('PUT', 'auth/tls-oidc/role/r', { role_type: 'jwt', user_claim: 'sub', bound_audiences: 'dbroker', token_policies: 'dbuser' })).status, 204);
    const ok = await login(await secure.sign(k2, good), 'r', 'tls-oidc');
    assert.equal(ok.status, 200, ok.text);
    const wrongIssuer = await login(await issuer.sign(k2, good), 'r', 'tls-oidc');
    assert.equal(wrongIssuer.status, 400, 'the discovered issuer is required');
    assert.equal((await pb.api('PUT', 'auth/tls-oidc/config', { jwks_url: `${secure.url}/jwks`, oidc_discovery_ca_pem: tls.cert })).status, 400, 'a CA for the wrong source');
  } finally {
    await secure.stop();
  }
});

test('browser OIDC flow: auth_url with state, nonce and PKCE; callback exchanges the code and verifies the ID token', async () => {
  issuer.published = [k1];
  assert.equal((await pb.api('PUT', 'sys/auth/browser', { type: 'oidc' })).status, 204);
  const c = await pb.api('PUT', 'auth/browser/config', { oidc_discovery_url: issuer.url, oidc_client_id: issuer.client.id, oidc_client_secret: issuer.client.secret, default_role: 'people' });
  assert.equal(c.status, 204, c.text);
  const read = await pb.api('GET', 'auth/browser/config');
  assert.equal(read.body.data.oidc_client_id, issuer.client.id);
  assert.ok(!read.text.includes(issuer.client.secret), 'the client secret is never read back');
  const redirect = 'http://localhost:8250/oidc/callback';
  const r = await pb.api('PUT', 'auth/browser/role/people', {
    allowed_redirect_uris: [redirect],
    user_claim: 'email',
    oidc_scopes: ['email', 'profile'],
    bound_claims: { groups: 'dba' },
    claim_mappings: { name: 'name' },
    token_policies: 'dbuser',
  });
  assert.equal(r.status, 204, r.text);
  assert.equal((await pb.api('GET', 'auth/browser/role/people')).body.data.role_type, 'oidc', 'Vault\'s default role_type');

  const start = async (body: Record<string, unknown> = { role: 'people', redirect_uri: redirect }) => {
    const res = await pb.broker.api('PUT', 'auth/browser/oidc/auth_url', { body });
    assert.equal(res.status, 200, res.text);
    return res.body.data.auth_url as string;
  };
  const callback = (q: Record<string, string>) => pb.broker.api('GET', `auth/browser/oidc/callback?${new URLSearchParams(q)}`);
  const user = { sub: 'u-1', email: 'alice@example.com', name: 'Alice', groups: ['dba', 'eng'] };

  const url = await start();
  const params = new URL(url).searchParams;
  assert.ok(url.startsWith(`${issuer.url}/authorize?`));
  assert.equal(params.get('client_id'), issuer.client.id);
  assert.equal(params.get('response_type'), 'code');
  assert.equal(params.get('redirect_uri'), redirect);
  assert.equal(params.get('scope'), 'openid email profile');
  assert.equal(params.get('code_challenge_method'), 'S256');
  assert.match(params.get('code_challenge') ?? '', /^[A-Za-z0-9_-]{43}$/);
  assert.ok((params.get('state') ?? '').length > 20 && (params.get('nonce') ?? '').length > 20);

  const grant = issuer.authorize(url, user);
  const ok = await callback({ state: grant.state, code: grant.code });
  assert.equal(ok.status, 200, ok.text);
  assert.deepEqual(ok.body.auth.policies, ['dbuser', 'default']);
  assert.deepEqual(ok.body.auth.metadata, { role: 'people', name: 'Alice' });
  assert.equal(issuer.tokenRequests.at(-1)?.status, 200, 'the code was exchanged with the client secret and the PKCE verifier');
  const self = await pb.broker.api('GET', 'auth/token/lookup-self', { token: ok.body.auth.client_token });
  assert.equal(self.body.data.display_name, 'browser-alice@example.com');

  // The state works once.
  const replay = await callback({ state: grant.state, code: grant.code });
  assert.equal(replay.status, 400);
  assert.match(replay.body.errors[0], /state/);
  assert.equal((await callback({ state: 'st_made_up', code: 'x' })).status, 400);

  const cases: Array<[string, () => Promise<Record<string, string>>, number, RegExp]> = [
    ['an ID token with another nonce', async () => { const g = issuer.authorize(await start(), user, { nonce: 'n_other' }); return { state: g.state, code: g.code }; }, 400, /nonce/],
    ['a code issued for another login (PKCE)', async () => {
      const first = issuer.authorize(await start(), user);
      const second = issuer.authorize(await start(), user);
      return { state: second.state, code: first.code };
    }, 400, /refused the authorization code/],
    ['bound claim mismatch', async () => { const g = issuer.authorize(await start(), { ...user, groups: ['eng'] }); return { state: g.state, code: g.code }; }, 403, /bound_claims/],
    ['the provider reports an error', async () => { const g = issuer.authorize(await start(), user); return { state: g.state, error: 'access_denied' }; }, 400, /access_denied/],
    ['client_nonce mismatch', async () => { const g = issuer.authorize(await start({ role: 'people', redirect_uri: redirect, client_nonce: 'cn-1' }), user); return { state: g.state, code: g.code, client_nonce: 'cn-2' }; }, 400, /client_nonce/],
  ];
  for (const [what, make, status, message] of cases) {
    const res = await callback(await make());
    assert.equal(res.status, status, `${what}: ${res.text}`);
    assert.equal(res.body.auth, undefined, what);
    assert.match(res.body.errors[0], message, what);
  }
  const badRedirect = await pb.broker.api('PUT', 'auth/browser/oidc/auth_url', { body: { role: 'people', redirect_uri: 'https://evil.example/cb' } });
  assert.equal(badRedirect.status, 400);
  assert.match(badRedirect.body.errors[0], /allowed_redirect_uris/);
  // An oidc role cannot be used with a bare JWT at login.
  const direct = await pb.broker.api('PUT', 'auth/browser/login', { body: { role: 'people', jwt: await issuer.sign(k1, { ...user, aud: issuer.client.id }) } });
  assert.equal(direct.status, 400);
  assert.match(direct.body.errors[0], /oidc/);
  // A wrong client secret at the provider: no token.
  assert.equal((await pb.api('PUT', 'auth/browser/config', { oidc_discovery_url: issuer.url, oidc_client_id: issuer.client.id, oidc_client_secret: 'wrong', default_role: 'people' })).status, 204);
  const g = issuer.authorize(await start(), user);
  const wrongSecret = await callback({ state: g.state, code: g.code });
  assert.equal(wrongSecret.status, 400);
  assert.equal(issuer.tokenRequests.at(-1)?.error, 'invalid_client');
  assert.ok(!pb.broker.logs.includes(issuer.client.secret), 'the client secret is never logged');
  issuer.published = [k1, k2];
});

test('no JWT at rest or in the logs', async () => {
  const store = readFileSync(pb.broker.storagePath);
  let wal = Buffer.alloc(0);
  try {
    wal = readFileSync(pb.broker.storagePath + '-wal');
  } catch {
    // no WAL right now
  }
  for (const jwt of seenJwts) {
    const sig = jwt.split('.')[2] ?? '';
    for (const blob of [store, wal, Buffer.from(pb.broker.logs)]) {
      assert.equal(blob.indexOf(Buffer.from(jwt)), -1);
      if (sig.length > 20) assert.equal(blob.indexOf(Buffer.from(sig)), -1);
    }
  }
});
