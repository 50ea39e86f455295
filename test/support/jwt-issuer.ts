// A JWT issuer served by the test itself over HTTP: an OIDC discovery
// document and a JWKS whose keys (from jose) can be rotated mid-test, and
// helpers to sign tokens with any of them.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
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
  /** The browser flow's client, as registered at this provider. */
  client = { id: 'dbroker-client', secret: `client-secret-${randomBytes(8).toString('hex')}` };
  /** Authorization codes handed out by authorize(), each usable once. */
  private codes = new Map<string, { claims: JWTPayload; challenge: string; redirectUri: string; nonce: string }>();
  /** Token endpoint calls and how they were answered. */
  tokenRequests: Array<{ status: number; error?: string }> = [];

  async start(): Promise<void> {
    const handler: RequestListener = (req, res) => {
      if (req.url === '/.well-known/openid-configuration') {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({
          issuer: this.issuerOverride ?? this.url,
          jwks_uri: `${this.url}/jwks`,
          authorization_endpoint: `${this.url}/authorize`,
          token_endpoint: `${this.url}/token`,
          id_token_signing_alg_values_supported: ['RS256', 'ES256'],
        }));
      } else if (req.url === '/token' && req.method === 'POST') {
        let text = '';
        req.on('data', (d) => (text += d));
        req.on('end', () => void this.token(text, req.headers.authorization).then(({ status, body }) => {
          this.tokenRequests.push({ status, ...(body.error ? { error: String(body.error) } : {}) });
          res.statusCode = status;
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify(body));
        }));
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

  /**
   * What the provider does when the user signs in at the auth_url the broker
   * handed out: remember a one-time code for those parameters (nonce, PKCE
   * challenge, redirect URI) and the user's claims. Returns the callback's
   * query: state and code. `nonce` overrides the nonce put in the ID token.
   */
  authorize(authUrl: string, claims: JWTPayload, opts: { nonce?: string } = {}): { state: string; code: string; params: URLSearchParams } {
    const params = new URL(authUrl).searchParams;
    const code = `code-${randomBytes(12).toString('hex')}`;
    this.codes.set(code, { claims, challenge: params.get('code_challenge') ?? '', redirectUri: params.get('redirect_uri') ?? '', nonce: opts.nonce ?? params.get('nonce') ?? '' });
    return { state: params.get('state') ?? '', code, params };
  }

  /** The token endpoint (RFC 6749 §4.1.3 with PKCE, RFC 7636): client_secret_basic, one-time codes. */
  private async token(text: string, authorization: string | undefined): Promise<{ status: number; body: Record<string, unknown> }> {
    const form = new URLSearchParams(text);
    const basic = Buffer.from(`${encodeURIComponent(this.client.id)}:${encodeURIComponent(this.client.secret)}`).toString('base64');
    if (authorization !== `Basic ${basic}`) return { status: 401, body: { error: 'invalid_client' } };
    const grant = this.codes.get(form.get('code') ?? '');
    this.codes.delete(form.get('code') ?? '');
    if (form.get('grant_type') !== 'authorization_code' || !grant) return { status: 400, body: { error: 'invalid_grant' } };
    if (form.get('redirect_uri') !== grant.redirectUri) return { status: 400, body: { error: 'invalid_grant', error_description: 'redirect_uri' } };
    if (createHash('sha256').update(form.get('code_verifier') ?? '').digest('base64url') !== grant.challenge) return { status: 400, body: { error: 'invalid_grant', error_description: 'PKCE' } };
    const idToken = await this.sign(this.published[0]!, { aud: this.client.id, nonce: grant.nonce, ...grant.claims });
    return { status: 200, body: { access_token: 'at', token_type: 'Bearer', id_token: idToken } };
  }

  /** A signed token: iss = this issuer, iat = now, exp = now + 5 min unless `claims` say otherwise. */
  async sign(key: IssuerKey, claims: JWTPayload, opts: { kid?: string | null } = {}): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const header: { alg: string; kid?: string } = { alg: key.alg };
    if (opts.kid !== null) header.kid = opts.kid ?? key.kid;
    return new SignJWT({ iss: this.url, iat: now, exp: now + 300, ...claims }).setProtectedHeader(header).sign(key.privateKey);
  }
}
