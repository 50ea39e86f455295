// JWT verification shared by the jwt/oidc and kubernetes methods, with jose:
// the signature against an allowlist of asymmetric algorithms (never "none",
// never an HMAC algorithm, so a public key can never be used as an HMAC
// secret), then the time claims with Vault's leeways
// (https://developer.hashicorp.com/vault/api-docs/auth/jwt#clock_skew_leeway).
//
// Key sources: PEM public keys (jwt_validation_pubkeys, pem_keys), or a JWKS
// URL (jwks_url, or the jwks_uri of OIDC discovery) fetched, cached, and
// fetched again when a token names a key the cache lacks (at most once per
// REFRESH_COOLDOWN_MS), so keys rotated at the issuer work without a restart
// and keys it removed stop working at the next refresh.

import { createPublicKey, type KeyObject } from 'node:crypto';
import { compactVerify, createLocalJWKSet, decodeProtectedHeader, errors as joseErrors, exportJWK, type JSONWebKeySet, type JWK } from 'jose';
import { errors } from '../errors.ts';
import { fetchJson, FetchError } from './http-fetch.ts';

/** The signing algorithms a JWT may use: asymmetric only (RFC 7518 §3.1, RFC 8037). */
export const ASYMMETRIC_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;

const REFRESH_COOLDOWN_MS = 2_000;
const CACHE_MAX_AGE_MS = 10 * 60_000;

/** A login-time failure with the reason for the log and the message for the client. */
export class JwtRejected extends Error {
  override name = 'JwtRejected';
  constructor(
    message: string,
    /** 400 (malformed, bad signature, expired...) or 403 (valid but not allowed here). */
    readonly status: 400 | 403 = 400,
  ) {
    super(message);
  }
}

export interface KeySource {
  /** Verify the signature; returns the payload bytes. Throws JwtRejected. */
  verify(jwt: string, algorithms: readonly string[]): Promise<Uint8Array>;
}

/** Validate a list of algorithm names; throws BAD_FIELD naming `field`. */
export function parseAlgs(field: string, algs: string[]): string[] {
  for (const a of algs) {
    if (!(ASYMMETRIC_ALGS as readonly string[]).includes(a)) {
      throw errors.BAD_FIELD(field, `"${a.slice(0, 20)}" is not allowed (asymmetric algorithms only: ${ASYMMETRIC_ALGS.join(', ')})`);
    }
  }
  return algs;
}

/** Parse PEM public keys (SPKI, or an X.509 certificate); throws BAD_FIELD naming `field`. */
export function parsePublicKeys(field: string, pems: string[]): KeyObject[] {
  return pems.map((pem, i) => {
    let key: KeyObject;
    try {
      key = createPublicKey(pem);
    } catch {
      throw errors.BAD_FIELD(field, `entry ${i + 1} is not a PEM public key or certificate`);
    }
    if (!['rsa', 'rsa-pss', 'ec', 'ed25519', 'ed448'].includes(key.asymmetricKeyType ?? '')) throw errors.BAD_FIELD(field, `entry ${i + 1}: unsupported key type`);
    return key;
  });
}

/** The header of a compact JWS, or JwtRejected when it is not one. */
export function headerOf(jwt: string): { alg?: string; kid?: string } {
  if (typeof jwt !== 'string' || jwt.split('.').length !== 3) throw new JwtRejected('malformed JWT: expected three dot-separated parts');
  try {
    return decodeProtectedHeader(jwt) as { alg?: string; kid?: string };
  } catch {
    throw new JwtRejected('malformed JWT: the header is not valid base64url JSON');
  }
}

/** Claims of a JWT without verifying it (only to pick a role or a key; never trusted as such). */
export function unverifiedClaims(jwt: string): Record<string, unknown> {
  headerOf(jwt);
  try {
    const payload = JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString('utf8')) as unknown;
    if (payload !== null && typeof payload === 'object' && !Array.isArray(payload)) return payload as Record<string, unknown>;
  } catch {
    // fall through
  }
  throw new JwtRejected('malformed JWT: the payload is not a JSON object');
}

async function verifyWithSet(jwt: string, set: ReturnType<typeof createLocalJWKSet>, algorithms: readonly string[]): Promise<Uint8Array> {
  try {
    return (await compactVerify(jwt, set, { algorithms: [...algorithms] })).payload;
  } catch (err) {
    if (err instanceof joseErrors.JWKSMultipleMatchingKeys) {
      // Keys without a kid: try each candidate.
      for await (const key of err as unknown as AsyncIterable<CryptoKey>) {
        try {
          return (await compactVerify(jwt, key, { algorithms: [...algorithms] })).payload;
        } catch (inner) {
          if (!(inner instanceof joseErrors.JWSSignatureVerificationFailed)) throw inner;
        }
      }
      throw new joseErrors.JWSSignatureVerificationFailed();
    }
    throw err;
  }
}

/** Turn a jose error into the reason a client sees. */
export function rejectionOf(err: unknown): JwtRejected {
  if (err instanceof JwtRejected) return err;
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return new JwtRejected('the JWT is signed with an algorithm that is not allowed (jwt_supported_algs)');
  if (err instanceof joseErrors.JWKSNoMatchingKey) return new JwtRejected('no key matches the JWT (unknown kid or key type)');
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return new JwtRejected('the JWT signature does not verify');
  if (err instanceof joseErrors.JOSENotSupported) return new JwtRejected('the JWT uses an unsupported algorithm');
  if (err instanceof joseErrors.JWSInvalid) return new JwtRejected('malformed JWT');
  if (err instanceof joseErrors.JOSEError) return new JwtRejected(`the JWT is invalid (${err.code})`);
  throw err;
}

/** Fixed PEM keys (jwt_validation_pubkeys, pem_keys). */
export class StaticKeys implements KeySource {
  private set: Promise<ReturnType<typeof createLocalJWKSet>>;

  constructor(keys: KeyObject[]) {
    this.set = Promise.all(keys.map((k) => exportJWK(k))).then((jwks: JWK[]) => createLocalJWKSet({ keys: jwks }));
  }

  async verify(jwt: string, algorithms: readonly string[]): Promise<Uint8Array> {
    headerOf(jwt);
    try {
      const set = await this.set;
      // PEM keys have no kid: a token's kid (Kubernetes sets one) must not rule them out.
      const anyKid = Object.assign((header: Parameters<typeof set>[0], token: Parameters<typeof set>[1]) => set({ ...header, kid: undefined }, token), { jwks: set.jwks });
      return await verifyWithSet(jwt, anyKid as typeof set, algorithms);
    } catch (err) {
      throw rejectionOf(err);
    }
  }
}

/** Fetch and check a JWKS document. Throws FetchError. */
export async function fetchJwks(url: string, caPem?: string): Promise<JSONWebKeySet> {
  const { body } = await fetchJson(url, caPem ? { caPem } : {});
  const keys = (body as { keys?: unknown }).keys;
  if (!Array.isArray(keys)) throw new FetchError(`${url} is not a JWKS (no "keys" array)`);
  return body as JSONWebKeySet;
}

/** A JWKS URL, cached, refreshed on an unknown key (rate-limited) and when older than CACHE_MAX_AGE_MS. */
export class RemoteJwks implements KeySource {
  private set: ReturnType<typeof createLocalJWKSet> | undefined;
  private fetchedAt = 0;
  /** When the last fetch started (successful or not): the cooldown counts from here. */
  private lastAttempt = 0;
  private inFlight: Promise<void> | undefined;

  constructor(
    private readonly url: string,
    private readonly caPem?: string,
    initial?: JSONWebKeySet,
  ) {
    if (initial) {
      this.set = createLocalJWKSet(initial);
      this.fetchedAt = this.lastAttempt = Date.now();
    }
  }

  /** Fetch now (one fetch at a time). */
  private refresh(): Promise<void> {
    if (!this.inFlight) this.lastAttempt = Date.now();
    this.inFlight ??= fetchJwks(this.url, this.caPem)
      .then((jwks) => {
        this.set = createLocalJWKSet(jwks);
        this.fetchedAt = Date.now();
      })
      .finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  private async current(): Promise<ReturnType<typeof createLocalJWKSet>> {
    if (!this.set || Date.now() - this.fetchedAt > CACHE_MAX_AGE_MS) await this.refreshOrFail();
    return this.set!;
  }

  private async refreshOrFail(): Promise<void> {
    try {
      await this.refresh();
    } catch (err) {
      if (this.set) return; // keep serving the cached keys while the issuer is unreachable
      throw errors.AUTH_UPSTREAM(`cannot fetch the JWKS: ${(err as Error).message}`);
    }
  }

  async verify(jwt: string, algorithms: readonly string[]): Promise<Uint8Array> {
    headerOf(jwt);
    try {
      return await verifyWithSet(jwt, await this.current(), algorithms);
    } catch (err) {
      if (!(err instanceof joseErrors.JWKSNoMatchingKey)) throw rejectionOf(err);
      // A key the cache lacks: the issuer may have rotated. Fetch again, unless we just did.
      // Counted from the last attempt, so an unreachable issuer is not hammered either.
      if (this.inFlight === undefined && Date.now() - this.lastAttempt < REFRESH_COOLDOWN_MS) throw rejectionOf(err);
      await this.refreshOrFail();
      try {
        return await verifyWithSet(jwt, this.set!, algorithms);
      } catch (again) {
        throw rejectionOf(again);
      }
    }
  }
}

export interface Leeways {
  /** Seconds; applies to exp, nbf and iat. */
  clockSkew: number;
  /** Seconds more for exp; -1 = do not check exp. */
  expiration: number;
  /** Seconds more for nbf; -1 = do not check nbf. */
  notBefore: number;
  /** A JWT without exp is refused (default true; legacy Kubernetes service-account tokens have none). */
  requireExp?: boolean;
}

/**
 * exp, nbf, iat with leeways (Vault: exp is required unless the expiration
 * check is off; nbf falls back to iat). Throws JwtRejected.
 */
export function checkTimes(claims: Record<string, unknown>, leeway: Leeways, now = Date.now() / 1000): void {
  const num = (name: string): number | undefined => {
    const v = claims[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new JwtRejected(`the "${name}" claim must be a number`);
    return v;
  };
  const exp = num('exp');
  const nbf = num('nbf');
  const iat = num('iat');
  if (leeway.expiration >= 0) {
    if (exp === undefined && leeway.requireExp !== false) throw new JwtRejected('the JWT has no "exp" claim');
    if (exp !== undefined && now - leeway.clockSkew - leeway.expiration > exp) throw new JwtRejected('the JWT is expired');
  }
  const notBefore = nbf ?? iat;
  if (leeway.notBefore >= 0 && notBefore !== undefined && now + leeway.clockSkew + leeway.notBefore < notBefore) {
    throw new JwtRejected('the JWT is not yet valid (nbf/iat in the future)');
  }
  if (iat !== undefined && now + leeway.clockSkew < iat && leeway.notBefore >= 0) throw new JwtRejected('the JWT was issued in the future (iat)');
}

/** The `aud` claim as a list. */
export function audiences(claims: Record<string, unknown>): string[] {
  const aud = claims.aud;
  if (typeof aud === 'string') return [aud];
  if (Array.isArray(aud)) return aud.filter((a): a is string => typeof a === 'string');
  return [];
}

/** A claim by name, or by JSON pointer when the name starts with "/" (RFC 6901). */
export function claimAt(claims: Record<string, unknown>, name: string): unknown {
  if (!name.startsWith('/')) return claims[name];
  let cur: unknown = claims;
  for (const raw of name.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}

/** Vault's glob: "*" matches any run of characters, nothing else is special. */
export function globMatch(pattern: string, value: string): boolean {
  const re = new RegExp('^' + pattern.split('*').map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$', 's');
  return re.test(value);
}
