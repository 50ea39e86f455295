// A JWT issuer served by the test itself over HTTP: an OIDC discovery
// document and a JWKS whose keys (from jose) can be rotated mid-test, and
// helpers to sign tokens with any of them.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';

export interface IssuerKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
  spki: string;
}

export async function newKey(kid: string, alg = 'RS256'): Promise<IssuerKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, publicKey, jwk, spki: await exportSPKI(publicKey) };
}

/** A self-signed certificate for 127.0.0.1 (openssl), for an issuer served over HTTPS. */
export function selfSignedCert(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'dbroker-issuer-tls-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export class JwtIssuer {
  constructor(private readonly tls?: { key: string; cert: string }) {}

  private server: Server | undefined;
  url = '';
  /** The keys the JWKS publishes now. */
  published: IssuerKey[] = [];
  /** How many times the JWKS was fetched. */
  jwksFetches = 0;
  /** The issuer the discovery document names (defaults to the URL). */
  issuerOverride: string | undefined;

  async start(): Promise<void> {
    const handler: RequestListener = (req, res) => {
      if (req.url === '/.well-known/openid-configuration') {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ issuer: this.issuerOverride ?? this.url, jwks_uri: `${this.url}/jwks`, id_token_signing_alg_values_supported: ['RS256', 'ES256'] }));
      } else if (req.url === '/jwks') {
        this.jwksFetches++;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ keys: this.published.map((k) => k.jwk) }));
      } else {
        res.statusCode = 404;
        res.end('{}');
      }
    };
    this.server = this.tls ? createHttpsServer(this.tls, handler) : createServer(handler);
    await new Promise<void>((ok) => this.server!.listen(0, '127.0.0.1', ok));
    const { port } = this.server.address() as { port: number };
    this.url = `${this.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  }

  async stop(): Promise<void> {
    await new Promise<void>((ok) => (this.server ? this.server.close(() => ok()) : ok()));
  }

  /** A signed token: iss = this issuer, iat = now, exp = now + 5 min unless `claims` say otherwise. */
  async sign(key: IssuerKey, claims: JWTPayload, opts: { kid?: string | null } = {}): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const header: { alg: string; kid?: string } = { alg: key.alg };
    if (opts.kid !== null) header.kid = opts.kid ?? key.kid;
    return new SignJWT({ iss: this.url, iat: now, exp: now + 300, ...claims }).setProtectedHeader(header).sign(key.privateKey);
  }
}
