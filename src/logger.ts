// pino JSON logs. Secrets are redacted by path wherever they could appear,
// and code never interpolates a secret into a message.

import { pino, type Logger } from 'pino';

export const REDACT_PATHS = [
  'password',
  '*.password',
  'token',
  '*.token',
  'client_token',
  '*.client_token',
  'key',
  '*.key',
  'keys',
  '*.keys',
  'keys_base64',
  'root_token',
  '*.root_token',
  'connection_url',
  '*.connection_url',
  'req.headers["x-vault-token"]',
  'req.headers.authorization',
  'headers["x-vault-token"]',
  'headers.authorization',
];

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino({ level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { service: 'dbroker' } }, destination ?? process.stderr);
}
