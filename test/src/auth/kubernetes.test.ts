// Kubernetes auth over real HTTP against a real broker, with real crypto.
//
// TokenReview mode runs against a LOCAL STAND-IN for the Kubernetes API
// server (a Kubernetes API server cannot run here): an HTTP server in this
// test that implements POST /apis/authentication.k8s.io/v1/tokenreviews the
// way the API server answers it (authenticated, user.username
// "system:serviceaccount:<ns>:<name>", user.uid, audiences), checks the
// reviewer's bearer token, and knows which service-account tokens are valid.
// Local mode (pem_keys) verifies service-account-shaped JWTs signed by keys
// from jose. Both legacy secret-token claims and projected-token claims are
// used; display_name is kubernetes-<namespace>-<service account> and reaches
// the database username.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import { assertCredsByPolicy, setupDatabase } from '../../support/auth.ts';
import { newKey, type IssuerKey } from '../../support/jwt-issuer.ts';
import { dropRolesWithPrefix, startPgBroker, tag, type PgBroker } from '../../support/pg-broker.ts';
import { trustPostgres, type TestPostgres } from '../../support/scram-postgres.ts';
import { SignJWT } from 'jose';

let pb: PgBroker;
let server: TestPostgres;
let apiServer: Server;
let apiUrl = '';
let clusterKey: IssuerKey;
let otherKey: IssuerKey;
const prefix = `k8${tag()}`;
/** The reviewer's own service-account token (JWT-shaped, as the config requires). */
const REVIEWER = `${Buffer.from('{"alg":"RS256"}').toString('base64url')}.${Buffer.from('{"sub":"system:serviceaccount:vault:reviewer"}').toString('base64url')}.c2lnbmF0dXJl`;
/** Tokens the stand-in API server accepts: token → service account. */
const validTokens = new Map<string, { namespace: string; name: string; uid: string; audiences: string[] }>();
const reviews: Array<{ authorization: string | undefined; body: any }> = [];
let apiDown = false;

function legacyClaims(namespace: string, name: string, uid: string): Record<string, unknown> {
  return {
    iss: 'kubernetes/serviceaccount',
    sub: `system:serviceaccount:${namespace}:${name}`,
    'kubernetes.io/serviceaccount/namespace': namespace,
    'kubernetes.io/serviceaccount/service-account.name': name,
    'kubernetes.io/serviceaccount/service-account.uid': uid,
    'kubernetes.io/serviceaccount/secret.name': `${name}-token-x7k2p`,
  };
}

function projectedClaims(namespace: string, name: string, uid: string, aud: string[] = ['dbroker']): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: 'https://kubernetes.default.svc.cluster.local',
    sub: `system:serviceaccount:${namespace}:${name}`,
    aud,
    iat: now,
    nbf: now,
    exp: now + 3600,
    'kubernetes.io': { namespace, pod: { name: `${name}-5d8f`, uid: randomUUID() }, serviceaccount: { name, uid } },
  };
}

async function saToken(key: IssuerKey, claims: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: key.alg, kid: key.kid }).sign(key.privateKey);
}

before(async () => {
  [clusterKey, otherKey] = await Promise.all([newKey('cluster'), newKey('cluster')]);
  apiServer = createServer((req, res) => {
    let text = '';
    req.on('data', (d) => (text += d));
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      if (apiDown) {
        res.statusCode = 503;
        return res.end('{"kind":"Status","status":"Failure"}');
      }
      if (req.method !== 'POST' || req.url !== '/apis/authentication.k8s.io/v1/tokenreviews') {
        res.statusCode = 404;
        return res.end('{}');
      }
      const body = JSON.parse(text);
      reviews.push({ authorization: req.headers.authorization, body });
      const bearer = req.headers.authorization?.replace(/^Bearer /, '') ?? '';
      // Like the API server: the caller must be a valid token with the right to create TokenReviews.
      if (bearer !== REVIEWER && !validTokens.has(bearer)) {
        res.statusCode = 401;
        return res.end('{"kind":"Status","status":"Failure","reason":"Unauthorized"}');
      }
      const sa = validTokens.get(body.spec.token);
      const wanted: string[] = body.spec.audiences ?? [];
      const audOk = sa && (wanted.length === 0 || wanted.some((a) => sa.audiences.includes(a)));
      const status = sa && audOk
        ? { authenticated: true, user: { username: `system:serviceaccount:${sa.namespace}:${sa.name}`, uid: sa.uid, groups: ['system:serviceaccounts'] }, audiences: wanted.length ? wanted : sa.audiences }
        : { authenticated: false, error: sa ? 'token audiences are invalid' : 'invalid bearer token' };
      res.end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: body.spec, status }));
    });
  });
  await new Promise<void>((ok) => apiServer.listen(0, '127.0.0.1', ok));
  apiUrl = `http://127.0.0.1:${(apiServer.address() as { port: number }).port}`;

  server = await trustPostgres();
  pb = await startPgBroker({ config: { default_lease_ttl: '1h', max_lease_ttl: '4h' } });
  await setupDatabase(pb, server, prefix);
  assert.equal((await pb.api('PUT', 'sys/auth/kubernetes', { type: 'kubernetes' })).status, 204);
  assert.equal((await pb.api('PUT', 'auth/kubernetes/config', { kubernetes_host: apiUrl, token_reviewer_jwt: REVIEWER })).status, 204);
  const r = await pb.api('PUT', 'auth/kubernetes/role/app', {
    bound_service_account_names: ['web', 'worker-*'],
    bound_service_account_namespaces: ['payments', 'team-*'],
    token_policies: 'dbuser',
    token_ttl: '15m',
  });
  assert.equal(r.status, 204, r.text);
});

after(async () => {
  await pb?.close();
  await new Promise<void>((ok) => apiServer.close(() => ok()));
  await dropRolesWithPrefix(server, prefix);
  await server?.stop();
});

const login = (jwt: string, role = 'app', mount = 'kubernetes') => pb.broker.api('PUT', `auth/${mount}/login`, { body: { role, jwt } });

test('config and role in Vault shape; the reviewer JWT is never shown; bad fields are 400s', async () => {
  const c = await pb.api('GET', 'auth/kubernetes/config');
  assert.equal(c.status, 200);
  assert.equal(c.body.data.kubernetes_host, apiUrl);
  assert.equal(c.body.data.token_reviewer_jwt_set, true);
  assert.ok(!c.text.includes(REVIEWER));
  const r = await pb.api('GET', 'auth/kubernetes/role/app');
  assert.deepEqual(r.body.data.bound_service_account_names, ['web', 'worker-*']);
  assert.equal(r.body.data.alias_name_source, 'serviceaccount_uid');
  const bad: Array<[string, Record<string, unknown>, RegExp]> = [
    ['config', { kubernetes_host: 'not a url' }, /kubernetes_host/],
    ['config', {}, /kubernetes_host/],
    ['config', { kubernetes_host: apiUrl, kubernetes_ca_cert: 'junk' }, /kubernetes_ca_cert/],
    ['config', { kubernetes_host: apiUrl, pem_keys: ['junk'] }, /pem_keys/],
    ['config', { kubernetes_host: apiUrl, token_reviewer_jwt: 'not-a-jwt' }, /token_reviewer_jwt/],
    ['config', { kubernetes_host: apiUrl, use_annotations_as_alias_metadata: true }, /field "use_annotations_as_alias_metadata" is not supported/],
    ['role/x', { bound_service_account_names: '*', bound_service_account_namespaces: '*' }, /can not both be set/],
    ['role/x', { bound_service_account_names: 'a' }, /bound_service_account_namespaces/],
    ['role/x', { bound_service_account_names: 'a', bound_service_account_namespaces: 'b', alias_name_source: 'pod' }, /alias_name_source/],
    ['role/x', { bound_service_account_names: 'a', bound_service_account_namespace_selector: '{"matchLabels":{}}' }, /bound_service_account_namespace_selector/],
  ];
  for (const [path, body, message] of bad) {
    const w = await pb.api('PUT', `auth/kubernetes/${path}`, body);
    assert.equal(w.status, 400, `${path} ${JSON.stringify(body)}: ${w.text}`);
    assert.match(w.body.errors[0], message);
  }
  assert.equal((await pb.api('GET', 'auth/kubernetes/config')).body.data.kubernetes_host, apiUrl, 'a refused write changed nothing');
});

test('TokenReview mode (stand-in API server): legacy token; metadata and display_name as Vault sets them; creds by policy', async () => {
  const uid = randomUUID();
  // The signature is not ours to check in this mode: the API server decides.
  const jwt = await saToken(otherKey, legacyClaims('payments', 'web', uid));
  validTokens.set(jwt, { namespace: 'payments', name: 'web', uid, audiences: [] });
  const r = await login(jwt);
  assert.equal(r.status, 200, r.text);
  const last = reviews[reviews.length - 1]!;
  assert.equal(last.authorization, `Bearer ${REVIEWER}`, 'the reviewer JWT authenticates the TokenReview');
  assert.equal(last.body.kind, 'TokenReview');
  assert.equal(last.body.spec.token, jwt);
  const auth = r.body.auth;
  assert.deepEqual(auth.policies, ['dbuser', 'default']);
  assert.deepEqual(auth.metadata, { service_account_name: 'web', service_account_namespace: 'payments', service_account_uid: uid, service_account_secret_name: 'web-token-x7k2p', role: 'app' });
  assert.equal(auth.lease_duration, 900);
  const self = await pb.broker.api('GET', 'auth/token/lookup-self', { token: auth.client_token });
  assert.equal(self.body.data.display_name, 'kubernetes-payments-web');
  await assertCredsByPolicy(pb, server, auth.client_token, prefix, 'kubernetes-payments-web');
});

test('TokenReview mode: projected token with audience; the caller\'s own JWT when no reviewer is set', async () => {
  assert.equal((await pb.api('PUT', 'auth/kubernetes/role/aud', { bound_service_account_names: 'worker-*', bound_service_account_namespaces: 'team-*', audience: 'dbroker', token_policies: 'dbuser' })).status, 204);
  const uid = randomUUID();
  const jwt = await saToken(otherKey, projectedClaims('team-a', 'worker-1', uid));
  validTokens.set(jwt, { namespace: 'team-a', name: 'worker-1', uid, audiences: ['dbroker'] });
  const r = await login(jwt, 'aud');
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(reviews[reviews.length - 1]!.body.spec.audiences, ['dbroker']);
  assert.equal(r.body.auth.metadata.service_account_uid, uid);
  assert.equal(r.body.auth.metadata.service_account_secret_name, '');

  // Wrong audience at the API server: 403.
  const otherAud = await saToken(otherKey, projectedClaims('team-a', 'worker-2', randomUUID(), ['else']));
  validTokens.set(otherAud, { namespace: 'team-a', name: 'worker-2', uid: 'u', audiences: ['else'] });
  assert.equal((await login(otherAud, 'aud')).status, 403);

  // No token_reviewer_jwt: the caller's JWT reviews itself.
  assert.equal((await pb.api('PUT', 'sys/auth/k8s-self', { type: 'kubernetes' })).status, 204);
  assert.equal((await pb.api('PUT', 'auth/k8s-self/config', { kubernetes_host: apiUrl })).status, 204);
  assert.equal((await pb.api('PUT', 'auth/k8s-self/role/app', { bound_service_account_names: 'web', bound_service_account_namespaces: 'payments', token_policies: 'dbuser' })).status, 204);
  const self = await saToken(otherKey, legacyClaims('payments', 'web', 'uid-self'));
  validTokens.set(self, { namespace: 'payments', name: 'web', uid: 'uid-self', audiences: [] });
  const r2 = await login(self, 'app', 'k8s-self');
  assert.equal(r2.status, 200, r2.text);
  assert.equal(reviews[reviews.length - 1]!.authorization, `Bearer ${self}`);
});

test('TokenReview mode negatives: unknown token, outside the globs, malformed, API down', async () => {
  const unknown = await saToken(otherKey, legacyClaims('payments', 'web', 'x'));
  const r = await login(unknown);
  assert.equal(r.status, 403, r.text);
  assert.match(r.body.errors[0], /did not authenticate/);
  const calls = reviews.length;
  const outsideNs = await saToken(otherKey, legacyClaims('kube-system', 'web', 'x'));
  validTokens.set(outsideNs, { namespace: 'kube-system', name: 'web', uid: 'x', audiences: [] });
  const ns = await login(outsideNs);
  assert.equal(ns.status, 403);
  assert.match(ns.body.errors[0], /namespace "kube-system" is not authorized/);
  const outsideSa = await saToken(otherKey, legacyClaims('payments', 'admin', 'x'));
  const sa = await login(outsideSa);
  assert.equal(sa.status, 403);
  assert.match(sa.body.errors[0], /service account "admin" is not authorized/);
  assert.equal(reviews.length, calls, 'the globs are checked before any API call');
  // Claims say one service account, the API server another: refused.
  const lying = await saToken(otherKey, legacyClaims('payments', 'web', 'x'));
  validTokens.set(lying, { namespace: 'payments', name: 'worker-9', uid: 'x', audiences: [] });
  assert.equal((await login(lying)).status, 403);
  for (const bad of ['abc', 'a.b.c', '']) {
    const m = await login(bad);
    assert.equal(m.status, 400, `${bad}: ${m.text}`);
    assert.equal(m.body.auth, undefined);
  }
  const notSa = await saToken(otherKey, { sub: 'someone', iss: 'x' });
  const n = await login(notSa);
  assert.equal(n.status, 400);
  assert.match(n.body.errors[0], /not a Kubernetes service-account token/);
  apiDown = true;
  const down = await login(await saToken(otherKey, legacyClaims('payments', 'web', 'x')));
  apiDown = false;
  assert.equal(down.status, 502, down.text);
  assert.match(down.body.errors[0], /TokenReview/);
  assert.equal((await login(unknown, 'no-role')).status, 400);
});

test('local mode (pem_keys): signature, expiry, audience, legacy and projected claims', async () => {
  assert.equal((await pb.api('PUT', 'sys/auth/k8s-local', { type: 'kubernetes' })).status, 204);
  const c = await pb.api('PUT', 'auth/k8s-local/config', { kubernetes_host: 'https://kubernetes.invalid', pem_keys: [clusterKey.spki] });
  assert.equal(c.status, 204, c.text);
  assert.equal((await pb.api('PUT', 'auth/k8s-local/role/app', { bound_service_account_names: 'web', bound_service_account_namespaces: 'payments', audience: 'dbroker', token_policies: 'dbuser' })).status, 204);
  assert.equal((await pb.api('PUT', 'auth/k8s-local/role/legacy', { bound_service_account_names: 'web', bound_service_account_namespaces: 'payments', token_policies: 'dbuser', alias_name_source: 'serviceaccount_name' })).status, 204);
  const before = reviews.length;
  const projected = await login(await saToken(clusterKey, projectedClaims('payments', 'web', 'uid-p')), 'app', 'k8s-local');
  assert.equal(projected.status, 200, projected.text);
  assert.equal(projected.body.auth.metadata.service_account_uid, 'uid-p');
  const legacy = await login(await saToken(clusterKey, legacyClaims('payments', 'web', 'uid-l')), 'legacy', 'k8s-local');
  assert.equal(legacy.status, 200, legacy.text);
  const self = await pb.broker.api('GET', 'auth/token/lookup-self', { token: legacy.body.auth.client_token });
  assert.equal(self.body.data.display_name, 'k8s-local-payments-web');
  assert.equal(reviews.length, before, 'no TokenReview in local mode');

  const now = Math.floor(Date.now() / 1000);
  const cases: Array<[string, Promise<string> | string, number, RegExp]> = [
    ['signed by another key', saToken(otherKey, projectedClaims('payments', 'web', 'u')), 400, /signature/],
    ['expired', saToken(clusterKey, { ...projectedClaims('payments', 'web', 'u'), exp: now - 300 }), 400, /expired/],
    ['not yet valid', saToken(clusterKey, { ...projectedClaims('payments', 'web', 'u'), nbf: now + 600, iat: now + 600 }), 400, /not yet valid/],
    ['wrong audience', saToken(clusterKey, projectedClaims('payments', 'web', 'u', ['other'])), 400, /audience/],
    ['namespace outside the globs', saToken(clusterKey, projectedClaims('default', 'web', 'u')), 403, /namespace/],
    ['alg none', `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify(projectedClaims('payments', 'web', 'u'))).toString('base64url')}.`, 400, /algorithm|invalid/],
    ['malformed', 'x.y', 400, /malformed/],
  ];
  for (const [what, jwt, status, message] of cases) {
    const r = await login(await jwt, 'app', 'k8s-local');
    assert.equal(r.status, status, `${what}: ${r.text}`);
    assert.equal(r.body.auth, undefined);
    assert.match(r.body.errors[0], message, what);
  }
  assert.ok(!pb.broker.logs.includes(REVIEWER), 'the reviewer JWT is never logged');
});
