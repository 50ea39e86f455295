// The per-device memo of token hashes (issue 11): each hash is computed once
// per token and field, equals the plain HMAC, and the memo stays bounded.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AuditHasher, hmacString, TOKEN_HASH_MEMO_SIZE, TokenHashMemo } from '../../../src/audit/hash.ts';

test('a token hash is computed once per token and field, and is the HMAC of the value', () => {
  const key = Buffer.alloc(32, 7);
  const memo = new TokenHashMemo();
  const first = new AuditHasher(key, memo);
  assert.equal(first.tokenSecret('hvs.secret', 'id-1'), hmacString(key, 'hvs.secret'));
  assert.equal(first.tokenAccessor('acc-1', 'id-1'), hmacString(key, 'acc-1'));
  // A later request's hasher (same device) reuses both without computing again.
  let computed = 0;
  const counted = new TokenHashMemo();
  const compute = (v: string) => () => (computed++, hmacString(key, v));
  assert.equal(counted.get('id-2', 'secret', compute('s2')), hmacString(key, 's2'));
  assert.equal(counted.get('id-2', 'secret', compute('s2')), hmacString(key, 's2'));
  assert.equal(counted.get('id-2', 'accessor', compute('a2')), hmacString(key, 'a2'));
  assert.equal(computed, 2, 'one computation per token and field');
  assert.equal(new AuditHasher(key, memo).tokenSecret('hvs.secret', 'id-1'), first.tokenSecret('hvs.secret', 'id-1'));
});

test('the memo keeps at most TOKEN_HASH_MEMO_SIZE tokens, dropping the least recently used', () => {
  const memo = new TokenHashMemo();
  for (let i = 0; i < TOKEN_HASH_MEMO_SIZE + 10; i++) {
    memo.get(`id-${i}`, 'secret', () => `h${i}`);
    if (i % 100 === 0) memo.get('id-0', 'secret', () => 'recomputed'); // kept in use
  }
  assert.equal(memo.size, TOKEN_HASH_MEMO_SIZE);
  assert.equal(memo.get('id-0', 'secret', () => 'recomputed'), 'h0', 'a token in use stays');
  assert.equal(memo.get('id-1', 'secret', () => 'recomputed'), 'recomputed', 'the least recently used went first');
});
