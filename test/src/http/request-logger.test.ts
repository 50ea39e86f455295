// The lazy per-request logger: made at its first use only, and then logging
// exactly what pino's child would (bindings, redaction).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger } from '../../../src/logger.ts';
import { LazyRequestLogger } from '../../../src/http/request-logger.ts';

function capture(): { lines: string[]; stream: Writable } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  return { lines, stream };
}

test('no child logger is made until something is logged', () => {
  const parent = createLogger('info', capture().stream);
  let made = 0;
  const child = parent.child.bind(parent);
  parent.child = ((...args: Parameters<typeof child>) => {
    made++;
    return child(...args);
  }) as typeof parent.child;
  const log = new LazyRequestLogger(parent, { reqId: 'r1' }, {});
  assert.equal(made, 0);
  log.info('hello');
  log.warn('again');
  assert.equal(made, 1);
});

test('lines carry the request id, the level and redaction of the parent', async () => {
  const { lines, stream } = capture();
  const log = new LazyRequestLogger(createLogger('warn', stream), { reqId: 'r2' }, {});
  assert.equal(log.level, 'warn');
  log.info({ a: 1 }, 'below the level');
  log.warn({ token: 'hvs.secret', headers: { authorization: 'Bearer s' } }, 'reply was already sent');
  log.error('plain %s', 'message');
  await new Promise((ok) => setImmediate(ok));
  assert.equal(lines.length, 2, lines.join('\n'));
  const warn = JSON.parse(lines[0]!);
  assert.equal(warn.reqId, 'r2');
  assert.equal(warn.service, 'dbroker');
  assert.equal(warn.msg, 'reply was already sent');
  assert.equal(warn.token, '[redacted]');
  assert.equal(warn.headers.authorization, '[redacted]');
  assert.ok(!lines[0]!.includes('secret'));
  assert.equal(JSON.parse(lines[1]!).msg, 'plain message');
  const sub = log.child({ step: 'x' });
  sub.error('from a child');
  await new Promise((ok) => setImmediate(ok));
  assert.equal(JSON.parse(lines[2]!).reqId, 'r2');
  assert.equal(JSON.parse(lines[2]!).step, 'x');
});
