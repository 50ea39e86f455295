// JWT/OIDC (type "jwt", also enabled as "oidc"), in Vault's API shape
// (https://developer.hashicorp.com/vault/api-docs/auth/jwt): config, role/:name
// (role_type "jwt" or "oidc"), LIST role, login, oidc/auth_url, oidc/callback. Keys come from exactly one of
// oidc_discovery_url, jwks_url or jwt_validation_pubkeys; each is checked when
// the config is written (a discovery document or JWKS that cannot be fetched
// is a 400 then, not a failed login later).
//
// The browser OIDC flow (role_type "oidc", with oidc_client_id/secret and
// discovery): oidc/auth_url hands out the provider's authorization URL with a
// random state, nonce and PKCE (S256) challenge, kept in memory for
// OIDC_STATE_TTL_MS and usable once; oidc/callback exchanges the code at the
// provider's token endpoint (client_secret_basic, the PKCE verifier) and
// verifies the ID token like a JWT login plus its nonce and audience (the
// client ID unless bound_audiences says otherwise). Only the authorization
// code flow with query responses (no form_post, no implicit id_token).

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { errors } from '../../errors.ts';
import type { RequestContext, Route } from '../../http/route.ts';
import { durationField, listField, object, stringList } from '../../http/schema.ts';
import { addressAllowed } from '../cidr.ts';
import { fetchJson } from '../http-fetch.ts';
import {
  ASYMMETRIC_ALGS,
  audiences,
  checkTimes,
  claimAt,
  fetchJwks,
  globMatch,
  JwtRejected,
  parseAlgs,
  parsePublicKeys,
  RemoteJwks,
  StaticKeys,
  type KeySource,
} from '../jwt-verify.ts';
import { anyValue, refuseUnsupported, samePolicies, type AuthMethod, type MethodContext } from '../method.ts';
import { parseTokenParams, tokenParamsSchema, tokenParamsView, type TokenParams } from '../token-params.ts';

interface JwtConfig {
  oidcDiscoveryUrl: string;
  oidcDiscoveryCaPem: string;
  jwksUrl: string;
  jwksCaPem: string;
  jwtValidationPubkeys: string[];
  boundIssuer: string;
  jwtSupportedAlgs: string[];
  defaultRole: string;
  /** The browser flow's client (the secret is sealed with the entry and never read back). */
  oidcClientId?: string;
  oidcClientSecret?: string;
  /** From discovery: the issuer the provider names, its jwks_uri and flow endpoints. */
  discoveredIssuer?: string;
  discoveredJwksUri?: string;
  discoveredAuthorizationEndpoint?: string;
  discoveredTokenEndpoint?: string;
}

interface JwtRole {
  name: string;
  /** Absent in records written before the browser flow existed: "jwt". */
  roleType?: 'jwt' | 'oidc';
  allowedRedirectUris?: string[];
  oidcScopes?: string[];
  boundAudiences: string[];
  userClaim: string;
  userClaimJsonPointer: boolean;
  boundSubject: string;
  boundClaims: Record<string, string[]>;
  boundClaimsType: 'string' | 'glob';
  claimMappings: Record<string, string>;
  groupsClaim: string;
  clockSkewLeeway: number;
  expirationLeeway: number;
  notBeforeLeeway: number;
  token: TokenParams;
}

const ROLE_NAME = /^[\w.@-]{1,128}$/;
const pem = { type: 'string', maxLength: 65536 } as const;
const url = { type: 'string', maxLength: 2048 } as const;
/** Leeways are seconds, or -1 to turn a check off (Vault). */
const leeway = { anyOf: [{ type: 'integer', minimum: -1, maximum: 86400 }, { type: 'string', maxLength: 32 }] } as const;

/** How long an oidc/auth_url state may wait for its callback (Vault: 10 minutes). */
const OIDC_STATE_TTL_MS = 10 * 60_000;
/** At most this many flows pending per mount (memory stays bounded). */
const OIDC_MAX_PENDING = 10_000;

interface PendingFlow {
  role: string;
  redirectUri: string;
  nonce: string;
  verifier: string;
  clientNonce: string;
  expiresAt: number;
}

const UNSUPPORTED_CONFIG: Record<string, string> = {
  jwks_pairs: 'use one jwks_url',
  provider_config: 'provider-specific group lookups are not implemented',
  namespace_in_state: 'there are no namespaces',
  unsupported_critical_cert_extensions: 'not implemented',
};

const UNSUPPORTED_ROLE: Record<string, string> = {
  verbose_oidc_logging: 'ID tokens and claims are never logged',
  max_age: 'auth_time checks are not implemented',
  user_claim_json_pointer_disabled: 'not implemented',
};

const configSchema = object({
  oidc_discovery_url: url,
  oidc_discovery_ca_pem: pem,
  jwks_url: url,
  jwks_ca_pem: pem,
  jwt_validation_pubkeys: stringList,
  bound_issuer: { type: 'string', maxLength: 2048 },
  jwt_supported_algs: stringList,
  default_role: { type: 'string', maxLength: 128 },
  oidc_client_id: { type: 'string', maxLength: 1024 },
  oidc_client_secret: { type: 'string', maxLength: 4096 },
  oidc_response_mode: { type: 'string', maxLength: 32 },
  oidc_response_types: stringList,
  ...Object.fromEntries(Object.keys(UNSUPPORTED_CONFIG).map((k) => [k, anyValue])),
});

const roleSchema = object({
  ...tokenParamsSchema,
  role_type: { type: 'string', maxLength: 16 },
  bound_audiences: stringList,
  user_claim: { type: 'string', minLength: 1, maxLength: 256 },
  user_claim_json_pointer: { type: 'boolean' },
  bound_subject: { type: 'string', maxLength: 1024 },
  bound_claims: { type: 'object', maxProperties: 64 },
  bound_claims_type: { type: 'string', enum: ['string', 'glob'] },
  claim_mappings: { type: 'object', maxProperties: 64, additionalProperties: { type: 'string', maxLength: 256 } },
  groups_claim: { type: 'string', maxLength: 256 },
  clock_skew_leeway: leeway,
  expiration_leeway: leeway,
  not_before_leeway: leeway,
  allowed_redirect_uris: stringList,
  oidc_scopes: stringList,
  ...Object.fromEntries(Object.keys(UNSUPPORTED_ROLE).map((k) => [k, anyValue])),
});

function leewayField(body: Record<string, unknown>, field: string, fallback: number): number {
  const v = body[field];
  if (v === undefined || v === null) return fallback;
  if (v === -1 || v === '-1') return -1;
  const d = durationField(body, field);
  return d ?? fallback;
}

/** Vault's bound_claims: each value a string, number, bool or a list of them. */
function parseBoundClaims(raw: unknown): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [k, v] of Object.entries((raw ?? {}) as Record<string, unknown>)) {
    const list = Array.isArray(v) ? v : typeof v === 'string' ? v.split(',').map((s) => s.trim()) : [v];
    if (list.length === 0 || list.some((x) => typeof x !== 'string' && typeof x !== 'number' && typeof x !== 'boolean')) {
      throw errors.BAD_FIELD(`bound_claims.${k}`, 'must be a string, number, boolean or a list of them');
    }
    out[k] = list.map(String);
  }
  return out;
}

function scalar(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return undefined;
}

export class JwtMethod implements AuthMethod {
  private keys: KeySource | undefined;
  /** The config (as JSON) the cached key source was built for. */
  private keysFor = '';
  /** Browser flows between auth_url and callback, by state. */
  private readonly pending = new Map<string, PendingFlow>();

  constructor(private readonly ctx: MethodContext) {}

  private path(rest: string): string {
    return `auth/${this.ctx.mount.path}${rest}`;
  }

  private async config(): Promise<JwtConfig | undefined> {
    return this.ctx.store.get<JwtConfig>('config');
  }

  /** The key source of the stored config (built once per config write). */
  private async keySource(config: JwtConfig): Promise<KeySource> {
    const id = JSON.stringify(config);
    if (this.keys && this.keysFor === id) return this.keys;
    let source: KeySource;
    if (config.jwtValidationPubkeys.length > 0) source = new StaticKeys(parsePublicKeys('jwt_validation_pubkeys', config.jwtValidationPubkeys));
    else if (config.jwksUrl) source = new RemoteJwks(config.jwksUrl, config.jwksCaPem || undefined);
    else source = new RemoteJwks(config.discoveredJwksUri!, config.oidcDiscoveryCaPem || undefined);
    this.keys = source;
    this.keysFor = id;
    return source;
  }

  private async writeConfig(body: Record<string, unknown>): Promise<void> {
    refuseUnsupported(body, UNSUPPORTED_CONFIG);
    const str = (f: string): string => (typeof body[f] === 'string' ? (body[f] as string).trim() : '');
    const config: JwtConfig = {
      oidcDiscoveryUrl: str('oidc_discovery_url'),
      oidcDiscoveryCaPem: str('oidc_discovery_ca_pem'),
      jwksUrl: str('jwks_url'),
      jwksCaPem: str('jwks_ca_pem'),
      jwtValidationPubkeys: listField({ k: Array.isArray(body.jwt_validation_pubkeys) ? body.jwt_validation_pubkeys : body.jwt_validation_pubkeys ? [body.jwt_validation_pubkeys] : [] }, 'k') ?? [],
      boundIssuer: str('bound_issuer'),
      jwtSupportedAlgs: parseAlgs('jwt_supported_algs', listField(body, 'jwt_supported_algs') ?? []),
      defaultRole: str('default_role'),
      oidcClientId: str('oidc_client_id'),
      oidcClientSecret: typeof body.oidc_client_secret === 'string' ? body.oidc_client_secret : '',
    };
    const mode = str('oidc_response_mode');
    if (mode !== '' && mode !== 'query') throw errors.UNSUPPORTED_FIELD('oidc_response_mode', `"${mode.slice(0, 20)}": only "query" responses are implemented`);
    const types = listField(body, 'oidc_response_types') ?? [];
    if (types.some((t) => t !== 'code')) throw errors.UNSUPPORTED_FIELD('oidc_response_types', 'only the authorization code flow ("code") is implemented');
    if (config.oidcClientId && !config.oidcDiscoveryUrl) throw errors.BAD_FIELD('oidc_client_id', 'the browser flow needs oidc_discovery_url');
    if (config.oidcClientSecret && !config.oidcClientId) throw errors.BAD_FIELD('oidc_client_secret', 'needs oidc_client_id');
    const sources = [config.oidcDiscoveryUrl !== '', config.jwksUrl !== '', config.jwtValidationPubkeys.length > 0].filter(Boolean).length;
    if (sources !== 1) throw errors.BAD_REQUEST('exactly one of "oidc_discovery_url", "jwks_url" or "jwt_validation_pubkeys" must be set');
    if (config.oidcDiscoveryCaPem && !config.oidcDiscoveryUrl) throw errors.BAD_FIELD('oidc_discovery_ca_pem', 'needs oidc_discovery_url');
    if (config.jwksCaPem && !config.jwksUrl) throw errors.BAD_FIELD('jwks_ca_pem', 'needs jwks_url');
    if (config.jwtValidationPubkeys.length > 0) parsePublicKeys('jwt_validation_pubkeys', config.jwtValidationPubkeys);
    // Refuse early: what cannot be fetched now would fail every login.
    if (config.jwksUrl) {
      try {
        await fetchJwks(config.jwksUrl, config.jwksCaPem || undefined);
      } catch (err) {
        throw errors.BAD_FIELD('jwks_url', `cannot fetch a JWKS: ${(err as Error).message}`);
      }
    }
    if (config.oidcDiscoveryUrl) {
      const base = config.oidcDiscoveryUrl.replace(/\/+$/, '');
      let doc: { issuer?: unknown; jwks_uri?: unknown; authorization_endpoint?: unknown; token_endpoint?: unknown };
      try {
        doc = (await fetchJson(`${base}/.well-known/openid-configuration`, config.oidcDiscoveryCaPem ? { caPem: config.oidcDiscoveryCaPem } : {})).body as typeof doc;
      } catch (err) {
        throw errors.BAD_FIELD('oidc_discovery_url', `cannot fetch the discovery document: ${(err as Error).message}`);
      }
      if (typeof doc.issuer !== 'string' || typeof doc.jwks_uri !== 'string') throw errors.BAD_FIELD('oidc_discovery_url', 'the discovery document has no issuer or jwks_uri');
      // OpenID Connect Discovery 1.0 §4.3: the issuer must be the URL it was discovered at.
      if (doc.issuer.replace(/\/+$/, '') !== base) throw errors.BAD_FIELD('oidc_discovery_url', `the provider names issuer "${doc.issuer.slice(0, 200)}", not "${base}"`);
      try {
        await fetchJwks(doc.jwks_uri, config.oidcDiscoveryCaPem || undefined);
      } catch (err) {
        throw errors.BAD_FIELD('oidc_discovery_url', `cannot fetch the provider's jwks_uri: ${(err as Error).message}`);
      }
      config.discoveredIssuer = doc.issuer;
      config.discoveredJwksUri = doc.jwks_uri;
      if (config.oidcClientId) {
        if (typeof doc.authorization_endpoint !== 'string' || typeof doc.token_endpoint !== 'string') {
          throw errors.BAD_FIELD('oidc_client_id', 'the provider\'s discovery document has no authorization_endpoint or token_endpoint');
        }
        config.discoveredAuthorizationEndpoint = doc.authorization_endpoint;
        config.discoveredTokenEndpoint = doc.token_endpoint;
      }
    }
    await this.ctx.store.put('config', config);
  }

  private configView(c: JwtConfig): Record<string, unknown> {
    return {
      oidc_discovery_url: c.oidcDiscoveryUrl,
      oidc_discovery_ca_pem: c.oidcDiscoveryCaPem,
      jwks_url: c.jwksUrl,
      jwks_ca_pem: c.jwksCaPem,
      jwt_validation_pubkeys: c.jwtValidationPubkeys,
      bound_issuer: c.boundIssuer,
      jwt_supported_algs: c.jwtSupportedAlgs,
      default_role: c.defaultRole,
      oidc_client_id: c.oidcClientId ?? '',
      oidc_response_mode: '',
      oidc_response_types: [],
      provider_config: {},
      namespace_in_state: false,
    };
  }

  private roleName(ctx: RequestContext): string {
    const n = ctx.params.name!;
    if (!ROLE_NAME.test(n)) throw errors.BAD_FIELD('name', 'may contain only letters, digits, "_", ".", "@" and "-" (at most 128)');
    return n;
  }

  private async writeRole(body: Record<string, unknown>, name: string): Promise<void> {
    refuseUnsupported(body, UNSUPPORTED_ROLE);
    const existing = await this.ctx.store.get<JwtRole>(`role/${name}`);
    // Vault's default role_type is "oidc", on jwt mounts too.
    const roleType = body.role_type ?? existing?.roleType ?? 'oidc';
    if (roleType !== 'jwt' && roleType !== 'oidc') throw errors.BAD_FIELD('role_type', 'must be "jwt" or "oidc"');
    const redirects = listField(body, 'allowed_redirect_uris') ?? existing?.allowedRedirectUris ?? [];
    for (const uri of redirects) {
      try {
        new URL(uri);
      } catch {
        throw errors.BAD_FIELD('allowed_redirect_uris', `"${uri.slice(0, 100)}" is not a URL`);
      }
    }
    const role: JwtRole = {
      name,
      roleType,
      allowedRedirectUris: redirects,
      oidcScopes: listField(body, 'oidc_scopes') ?? existing?.oidcScopes ?? [],
      boundAudiences: listField(body, 'bound_audiences') ?? existing?.boundAudiences ?? [],
      userClaim: typeof body.user_claim === 'string' ? body.user_claim : (existing?.userClaim ?? ''),
      userClaimJsonPointer: typeof body.user_claim_json_pointer === 'boolean' ? body.user_claim_json_pointer : (existing?.userClaimJsonPointer ?? false),
      boundSubject: typeof body.bound_subject === 'string' ? body.bound_subject : (existing?.boundSubject ?? ''),
      boundClaims: body.bound_claims !== undefined ? parseBoundClaims(body.bound_claims) : (existing?.boundClaims ?? {}),
      boundClaimsType: (body.bound_claims_type as JwtRole['boundClaimsType'] | undefined) ?? existing?.boundClaimsType ?? 'string',
      claimMappings: (body.claim_mappings as Record<string, string> | undefined) ?? existing?.claimMappings ?? {},
      groupsClaim: typeof body.groups_claim === 'string' ? body.groups_claim : (existing?.groupsClaim ?? ''),
      clockSkewLeeway: leewayField(body, 'clock_skew_leeway', existing?.clockSkewLeeway ?? 60),
      expirationLeeway: leewayField(body, 'expiration_leeway', existing?.expirationLeeway ?? 150),
      notBeforeLeeway: leewayField(body, 'not_before_leeway', existing?.notBeforeLeeway ?? 150),
      token: parseTokenParams(body, existing?.token),
    };
    if (role.clockSkewLeeway < 0) role.clockSkewLeeway = 0;
    if (role.userClaim === '') throw errors.BAD_REQUEST('missing required field "user_claim"');
    if (role.userClaim.startsWith('/') && !role.userClaimJsonPointer) throw errors.BAD_FIELD('user_claim', 'is a JSON pointer; set user_claim_json_pointer to true');
    if (role.roleType === 'oidc' && redirects.length === 0) throw errors.BAD_REQUEST('"allowed_redirect_uris" must be set if "role_type" is "oidc" or unspecified');
    // Vault: a jwt role must bind something besides the signature (an oidc role binds the client ID).
    if (role.roleType !== 'oidc' && role.boundAudiences.length === 0 && role.boundSubject === '' && Object.keys(role.boundClaims).length === 0) {
      throw errors.BAD_REQUEST('a "jwt" role must have at least one bound constraint (bound_audiences, bound_subject or bound_claims)');
    }
    const values = Object.values(role.claimMappings);
    if (new Set(values).size !== values.length) throw errors.BAD_FIELD('claim_mappings', 'two claims map to the same metadata key');
    if (values.includes('role')) throw errors.BAD_FIELD('claim_mappings', 'the metadata key "role" is reserved');
    await this.ctx.store.put(`role/${name}`, role);
  }

  private roleView(r: JwtRole): Record<string, unknown> {
    return {
      role_type: r.roleType ?? 'jwt',
      bound_audiences: r.boundAudiences,
      user_claim: r.userClaim,
      user_claim_json_pointer: r.userClaimJsonPointer,
      bound_subject: r.boundSubject,
      bound_claims: Object.keys(r.boundClaims).length > 0 ? r.boundClaims : null,
      bound_claims_type: r.boundClaimsType,
      claim_mappings: Object.keys(r.claimMappings).length > 0 ? r.claimMappings : null,
      groups_claim: r.groupsClaim,
      clock_skew_leeway: r.clockSkewLeeway,
      expiration_leeway: r.expirationLeeway,
      not_before_leeway: r.notBeforeLeeway,
      allowed_redirect_uris: r.allowedRedirectUris ?? [],
      oidc_scopes: r.oidcScopes ?? [],
      verbose_oidc_logging: false,
      max_age: 0,
      ...tokenParamsView(r.token),
    };
  }

  private async login(ctx: RequestContext) {
    const config = await this.config();
    if (!config) throw errors.BAD_REQUEST(`${this.path('config')} is not set`);
    const roleName = typeof ctx.body.role === 'string' && ctx.body.role !== '' ? ctx.body.role : config.defaultRole;
    if (!roleName) throw errors.BAD_REQUEST('missing required field "role" (and no default_role is configured)');
    const role = await this.ctx.store.get<JwtRole>(`role/${roleName}`);
    if (!role) throw this.ctx.loginFailed(ctx, `unknown role "${roleName.slice(0, 128)}"`, errors.LOGIN_FAILED(`role "${roleName.slice(0, 128)}" could not be found`));
    const jwt = ctx.body.jwt;
    if (typeof jwt !== 'string' || jwt === '') throw errors.BAD_REQUEST('missing required field "jwt"');
    if (role.roleType === 'oidc') throw errors.BAD_REQUEST(`role "${role.name}" is an "oidc" role: log in through oidc/auth_url and oidc/callback`);
    return this.finishLogin(ctx, role, () => this.validate(jwt, config, role));
  }

  /** Checks shared by a JWT login and an OIDC callback, then the token. */
  private async finishLogin(ctx: RequestContext, role: JwtRole, verify: () => Promise<Record<string, unknown>>) {
    if (!addressAllowed(role.token.boundCidrs, ctx.remoteAddress)) {
      throw this.ctx.loginFailed(ctx, `role "${role.name}": client address is outside token_bound_cidrs`, errors.LOGIN_DENIED('login request originated from invalid CIDR'));
    }
    let claims: Record<string, unknown>;
    try {
      claims = await verify();
    } catch (err) {
      if (!(err instanceof JwtRejected)) throw err;
      const error = err.status === 403 ? errors.LOGIN_DENIED(err.message) : errors.LOGIN_FAILED(err.message);
      throw this.ctx.loginFailed(ctx, `role "${role.name}": ${err.message}`, error);
    }
    const user = role.userClaimJsonPointer ? claimAt(claims, role.userClaim) : claims[role.userClaim];
    const alias = scalar(user);
    if (alias === undefined || alias === '') {
      throw this.ctx.loginFailed(ctx, `role "${role.name}": no user claim "${role.userClaim}"`, errors.LOGIN_FAILED(`claim "${role.userClaim}" not found in token`));
    }
    const metadata: Record<string, string> = { role: role.name };
    for (const [claim, key] of Object.entries(role.claimMappings)) {
      const v = claimAt(claims, claim);
      if (v === undefined) continue;
      const s = scalar(v);
      if (s === undefined) throw this.ctx.loginFailed(ctx, `role "${role.name}": claim "${claim}" is not a scalar`, errors.LOGIN_FAILED(`claim "${claim}" cannot be mapped to metadata: not a string, number or boolean`));
      metadata[key] = s;
    }
    if (role.groupsClaim) {
      const groups = claimAt(claims, role.groupsClaim);
      if (groups === undefined || (typeof groups !== 'string' && !(Array.isArray(groups) && groups.every((g) => typeof g === 'string')))) {
        throw this.ctx.loginFailed(ctx, `role "${role.name}": groups claim missing or malformed`, errors.LOGIN_FAILED(`"${role.groupsClaim}" claim not found in token or not a list of strings`));
      }
    }
    return this.ctx.issue({ params: role.token, displayName: alias, metadata, aliasName: alias }, ctx);
  }

  /** oidc/auth_url: the provider URL to send the browser to, with state, nonce and a PKCE challenge. */
  private async authUrl(ctx: RequestContext) {
    const config = await this.config();
    if (!config?.oidcClientId || !config.discoveredAuthorizationEndpoint) throw errors.BAD_REQUEST(`${this.path('config')} has no oidc_client_id and oidc_discovery_url: the browser flow is not configured`);
    const roleName = typeof ctx.body.role === 'string' && ctx.body.role !== '' ? ctx.body.role : config.defaultRole;
    if (!roleName) throw errors.BAD_REQUEST('missing required field "role" (and no default_role is configured)');
    const role = await this.ctx.store.get<JwtRole>(`role/${roleName}`);
    if (!role) throw errors.BAD_FIELD('role', `role "${roleName.slice(0, 128)}" could not be found`);
    if (role.roleType !== 'oidc') throw errors.BAD_FIELD('role', `role "${role.name}" is not an "oidc" role`);
    const redirectUri = typeof ctx.body.redirect_uri === 'string' ? ctx.body.redirect_uri : '';
    if (!redirectUri) throw errors.BAD_REQUEST('missing required field "redirect_uri"');
    if (!(role.allowedRedirectUris ?? []).includes(redirectUri)) throw errors.BAD_FIELD('redirect_uri', `"${redirectUri.slice(0, 200)}" is not in the role's allowed_redirect_uris`);
    this.prunePending();
    if (this.pending.size >= OIDC_MAX_PENDING) throw errors.BAD_REQUEST('too many OIDC logins are in progress; try again in a few minutes');
    const state = `st_${randomBytes(20).toString('base64url')}`;
    const flow: PendingFlow = {
      role: role.name,
      redirectUri,
      nonce: `n_${randomBytes(20).toString('base64url')}`,
      verifier: randomBytes(32).toString('base64url'),
      clientNonce: typeof ctx.body.client_nonce === 'string' ? ctx.body.client_nonce : '',
      expiresAt: Date.now() + OIDC_STATE_TTL_MS,
    };
    this.pending.set(state, flow);
    const url = new URL(config.discoveredAuthorizationEndpoint);
    const scopes = ['openid', ...(role.oidcScopes ?? []).filter((sc) => sc !== 'openid')];
    url.searchParams.set('client_id', config.oidcClientId);
    url.searchParams.set('response_type', 'code');
    url.searchParams.set('redirect_uri', redirectUri);
    url.searchParams.set('scope', scopes.join(' '));
    url.searchParams.set('state', state);
    url.searchParams.set('nonce', flow.nonce);
    url.searchParams.set('code_challenge', createHash('sha256').update(flow.verifier).digest('base64url'));
    url.searchParams.set('code_challenge_method', 'S256');
    return { data: { auth_url: url.toString() } };
  }

  private prunePending(): void {
    const now = Date.now();
    for (const [state, flow] of this.pending) if (flow.expiresAt <= now) this.pending.delete(state);
  }

  /** oidc/callback: the state is used once; the code is exchanged; the ID token is verified; a token is issued. */
  private async callback(ctx: RequestContext) {
    const state = ctx.query.state ?? '';
    const code = ctx.query.code ?? '';
    const flow = this.pending.get(state);
    if (flow) this.pending.delete(state);
    if (!flow || flow.expiresAt <= Date.now()) throw this.ctx.loginFailed(ctx, 'OIDC callback with an unknown or expired state', errors.LOGIN_FAILED('expired or missing OAuth state'));
    if (ctx.query.error) throw this.ctx.loginFailed(ctx, `the provider returned an error (${String(ctx.query.error).slice(0, 64)})`, errors.LOGIN_FAILED(`the provider returned an error: ${String(ctx.query.error).slice(0, 64)}`));
    if (!code) throw errors.BAD_REQUEST('missing required query parameter "code"');
    if (flow.clientNonce && !equalStrings(flow.clientNonce, ctx.query.client_nonce ?? '')) {
      throw this.ctx.loginFailed(ctx, 'OIDC callback with a wrong client_nonce', errors.LOGIN_FAILED('invalid client_nonce'));
    }
    const config = await this.config();
    const role = await this.ctx.store.get<JwtRole>(`role/${flow.role}`);
    if (!config?.discoveredTokenEndpoint || !config.oidcClientId) throw errors.BAD_REQUEST(`${this.path('config')} no longer configures the browser flow`);
    if (!role) throw errors.LOGIN_FAILED(`role "${flow.role}" could not be found`);
    return this.finishLogin(ctx, role, async () => {
      const idToken = await this.exchange(config, code, flow);
      const claims = await this.validate(idToken, config, role);
      if (typeof claims.nonce !== 'string' || !equalStrings(claims.nonce, flow.nonce)) throw new JwtRejected('the ID token\'s nonce does not match this login');
      return claims;
    });
  }

  /** The authorization code for an ID token at the provider's token endpoint (RFC 6749 §4.1.3, RFC 7636). */
  private async exchange(config: JwtConfig, code: string, flow: PendingFlow): Promise<string> {
    const form = new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: flow.redirectUri, code_verifier: flow.verifier, client_id: config.oidcClientId! });
    const basic = Buffer.from(`${encodeURIComponent(config.oidcClientId!)}:${encodeURIComponent(config.oidcClientSecret ?? '')}`).toString('base64');
    let body: unknown;
    try {
      ({ body } = await fetchJson(config.discoveredTokenEndpoint!, {
        method: 'POST',
        body: form.toString(),
        contentType: 'application/x-www-form-urlencoded',
        headers: { authorization: `Basic ${basic}` },
        ...(config.oidcDiscoveryCaPem ? { caPem: config.oidcDiscoveryCaPem } : {}),
      }));
    } catch (err) {
      if ((err as { status?: number }).status !== undefined) throw new JwtRejected(`the provider refused the authorization code (${(err as Error).message})`);
      throw errors.AUTH_UPSTREAM(`the provider's token endpoint could not be used: ${(err as Error).message}`);
    }
    const idToken = (body as { id_token?: unknown }).id_token;
    if (typeof idToken !== 'string') throw new JwtRejected('the provider\'s token response has no id_token');
    return idToken;
  }

  /** Signature, algorithms, times, issuer, audience, subject, bound claims. Throws JwtRejected. */
  private async validate(jwt: string, config: JwtConfig, role: JwtRole): Promise<Record<string, unknown>> {
    const algs = config.jwtSupportedAlgs.length > 0 ? config.jwtSupportedAlgs : [...ASYMMETRIC_ALGS];
    const payload = await (await this.keySource(config)).verify(jwt, algs);
    let claims: unknown;
    try {
      claims = JSON.parse(Buffer.from(payload).toString('utf8'));
    } catch {
      throw new JwtRejected('the JWT payload is not JSON');
    }
    if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) throw new JwtRejected('the JWT payload is not a JSON object');
    const c = claims as Record<string, unknown>;
    checkTimes(c, { clockSkew: role.clockSkewLeeway, expiration: role.expirationLeeway, notBefore: role.notBeforeLeeway });
    const issuer = config.boundIssuer || config.discoveredIssuer || '';
    if (issuer && c.iss !== issuer) throw new JwtRejected('the JWT issuer ("iss") does not match bound_issuer');
    const aud = audiences(c);
    const bound = role.boundAudiences.length > 0 ? role.boundAudiences : role.roleType === 'oidc' && config.oidcClientId ? [config.oidcClientId] : [];
    if (bound.length > 0) {
      if (!aud.some((a) => bound.includes(a))) throw new JwtRejected('the JWT audience ("aud") matches none of the role\'s bound_audiences');
    } else if (aud.length > 0) throw new JwtRejected('the JWT has an audience ("aud") but the role binds none (set bound_audiences)');
    if (role.boundSubject && !(typeof c.sub === 'string' && equalStrings(c.sub, role.boundSubject))) throw new JwtRejected('the JWT subject ("sub") does not match bound_subject', 403);
    for (const [claim, expected] of Object.entries(role.boundClaims)) {
      const actual = claimAt(c, claim);
      const values = (Array.isArray(actual) ? actual : [actual]).map(scalar).filter((v): v is string => v !== undefined);
      const match = values.some((v) => expected.some((e) => (role.boundClaimsType === 'glob' ? globMatch(e, v) : e === v)));
      if (!match) throw new JwtRejected(`claim "${claim}" does not match the role's bound_claims`, 403);
    }
    return c;
  }

  async renewCheck(meta: Record<string, string>, policies: string[]): Promise<string | undefined> {
    const role = meta.role === undefined ? undefined : await this.ctx.store.get<JwtRole>(`role/${meta.role}`);
    if (!role) return `role "${meta.role ?? ''}" does not exist any more`;
    if (!samePolicies(role.token, policies)) return 'the role\'s policies have changed';
    return undefined;
  }

  routes(): Route[] {
    return [
      { methods: ['PUT'], pattern: 'login', auth: 'none', schema: object({ role: { type: 'string', maxLength: 128 }, jwt: { type: 'string', maxLength: 65536 } }), handler: (ctx) => this.login(ctx) },
      {
        methods: ['GET', 'PUT'],
        pattern: 'config',
        auth: 'token',
        schema: configSchema,
        handler: async (ctx) => {
          if (ctx.method === 'PUT') return void (await this.writeConfig(ctx.body));
          const c = await this.config();
          if (!c) throw errors.ENTRY_NOT_FOUND(this.path('config'));
          return { data: this.configView(c) };
        },
      },
      {
        methods: ['LIST'],
        pattern: 'role',
        auth: 'token',
        handler: async () => {
          const keys = await this.ctx.store.list('role/');
          if (keys.length === 0) throw errors.EMPTY_LIST(this.path('role/'));
          return { data: { keys } };
        },
      },
      {
        methods: ['GET', 'PUT', 'DELETE'],
        pattern: 'role/:name',
        auth: 'token',
        schema: roleSchema,
        handler: async (ctx) => {
          const n = this.roleName(ctx);
          if (ctx.method === 'PUT') return void (await this.writeRole(ctx.body, n));
          if (ctx.method === 'DELETE') return void (await this.ctx.store.delete(`role/${n}`));
          const r = await this.ctx.store.get<JwtRole>(`role/${n}`);
          if (!r) throw errors.ENTRY_NOT_FOUND(this.path(`role/${n}`));
          return { data: this.roleView(r) };
        },
      },
      {
        methods: ['PUT'],
        pattern: 'oidc/auth_url',
        auth: 'none',
        schema: object({ role: { type: 'string', maxLength: 128 }, redirect_uri: { type: 'string', maxLength: 2048 }, client_nonce: { type: 'string', maxLength: 256 } }),
        handler: (ctx) => this.authUrl(ctx),
      },
      { methods: ['GET'], pattern: 'oidc/callback', auth: 'none', getChangesState: true, handler: (ctx) => this.callback(ctx) },
    ];
  }
}

function equalStrings(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

