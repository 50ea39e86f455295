// SCRAM-SHA-256 password verifiers, computed here so the plaintext password
// never reaches the server (where log_statement or an error log could keep
// it). Used with the option password_authentication=scram-sha-256, as Vault.

import { createHash, createHmac, pbkdf2, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { EngineInputError } from '../../src/engine/engine.ts';

const ITERATIONS = 4096;
const pbkdf2Async = promisify(pbkdf2);

/**
 * The `SCRAM-SHA-256$iter:salt$StoredKey:ServerKey` string PostgreSQL stores
 * (RFC 5802/7677; PG manual "Password Authentication"). The PBKDF2 part
 * (4096 rounds, ~1 ms of CPU) runs on libuv's thread pool, not the event
 * loop: measured on the dev machine, 64 verifiers took 53-87 ms of event-loop
 * time with pbkdf2Sync, and 37 ms wall with at most 6 ms of event-loop lag
 * this way. Throws EngineInputError for a password that is not printable ASCII.
 */
export async function scramVerifier(password: string): Promise<string> {
  // PostgreSQL runs SASLprep on the password; for printable ASCII that is the
  // identity, and the broker generates nothing else. Refuse the rest rather
  // than store a verifier that might not match.
  if (!/^[\x20-\x7e]+$/.test(password)) {
    throw new EngineInputError('password_authentication=scram-sha-256 needs a printable ASCII password');
  }
  const salt = randomBytes(16);
  const salted = await pbkdf2Async(password, salt, ITERATIONS, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${ITERATIONS}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}
