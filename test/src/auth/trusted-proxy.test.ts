// token_bound_cidrs behind a reverse proxy: X-Forwarded-For counts only when
// the socket peer is a configured trusted proxy (trusted_proxies), read from
// the right; from anyone else the header is ignored. Real broker, real sockets
// from 127.0.0.2 (the "proxy") and 127.0.0.1 (a direct client).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { initAndUnseal, startBroker, type BrokerProcess } from '../../support/broker.ts';
import { apiFrom } from '../../support/auth.ts';
import { clientAddress } from '../../../src/http/client-address.ts';

let broker: BrokerProcess;
let root: string;
const password = 'proxy-test-password-1';

before(async () => {
  broker = await startBroker({ config: { trusted_proxies: ['127.0.0.2/32'] } });
  ({ rootToken: root } = await initAndUnseal(broker));
  assert.equal((await broker.api('PUT', 'sys/auth/userpass', { token: root, body: { type: 'userpass' } })).status, 204);
  assert.equal((await broker.api('PUT', 'auth/userpass/users/app', { token: root, body: { password, token_bound_cidrs: '10.1.2.3/32' } })).status, 204);
});

after(async () => {
  await broker?.stop();
  broker?.remove();
});

test('clientAddress: right-most untrusted hop; malformed or untrusted peers ignore the header', () => {
  const trusted = ['127.0.0.2/32', '10.9.0.0/16'];
  assert.equal(clientAddress('127.0.0.2', '10.1.2.3', trusted), '10.1.2.3');
  assert.equal(clientAddress('127.0.0.2', '6.6.6.6, 10.1.2.3, 10.9.0.7', trusted), '10.1.2.3', 'trusted hops are skipped, the client-chosen left part is not believed');
  assert.equal(clientAddress('127.0.0.1', '10.1.2.3', trusted), '127.0.0.1', 'an untrusted peer\'s header is ignored');
  assert.equal(clientAddress('127.0.0.2', 'garbage', trusted), '127.0.0.2');
  assert.equal(clientAddress('127.0.0.2', undefined, trusted), '127.0.0.2');
  assert.equal(clientAddress('127.0.0.2', '10.1.2.3', []), '127.0.0.2', 'no trusted proxies: never');
});

test('login and token use through the trusted proxy count as the forwarded client', async () => {
  const via = { 'x-forwarded-for': '10.1.2.3' };
  const direct = await apiFrom(broker, '127.0.0.1', 'PUT', 'auth/userpass/login/app', { body: { password }, headers: via });
  assert.equal(direct.status, 403, 'a direct client cannot claim an address with the header');
  const proxied = await apiFrom(broker, '127.0.0.2', 'PUT', 'auth/userpass/login/app', { body: { password }, headers: via });
  assert.equal(proxied.status, 200, proxied.text);
  const token = proxied.body.auth.client_token;
  assert.equal((await apiFrom(broker, '127.0.0.2', 'GET', 'auth/token/lookup-self', { token, headers: via })).status, 200);
  assert.equal((await apiFrom(broker, '127.0.0.2', 'GET', 'auth/token/lookup-self', { token, headers: { 'x-forwarded-for': '10.1.2.4' } })).status, 403);
  assert.equal((await apiFrom(broker, '127.0.0.1', 'GET', 'auth/token/lookup-self', { token, headers: via })).status, 403);
});
