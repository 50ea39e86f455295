// Kubernetes (type "kubernetes"), in Vault's API shape
// (https://developer.hashicorp.com/vault/api-docs/auth/kubernetes): config,
// role/:name, LIST role, login. A pod logs in with its service-account JWT.
//
// Two validation modes, as in Vault:
// - pem_keys set: the JWT's signature is verified here against those keys
//   (the cluster's service-account signing keys), with exp/nbf checked.
// - otherwise: the TokenReview API of kubernetes_host
//   (POST /apis/authentication.k8s.io/v1/tokenreviews) decides, called with
//   token_reviewer_jwt, or with the caller's own JWT when none is set (the
//   pod's token then needs the system:auth-delegator role). dbroker does not
//   run inside a pod, so it never reads a local service-account token or CA
//   (as with disable_local_ca_jwt = true).
// Both shapes of service-account token are read: the legacy secret-token
// claims ("kubernetes.io/serviceaccount/namespace", ".../service-account.name")
// and projected tokens ("kubernetes.io": {namespace, serviceaccount: {name, uid}}).
// The namespace and name are checked against the role's globs before any
// network call, and against what TokenReview reports after it.

import { X509Certificate } from 'node:crypto';
import { errors } from '../../errors.ts';
import type { RequestContext, Route } from '../../http/route.ts';
import { listField, object, stringList } from '../../http/schema.ts';
import { addressAllowed } from '../cidr.ts';
import { fetchJson, FetchError } from '../http-fetch.ts';
import { ASYMMETRIC_ALGS, audiences, checkTimes, globMatch, headerOf, JwtRejected, parsePublicKeys, StaticKeys, unverifiedClaims } from '../jwt-verify.ts';
import { anyValue, refuseUnsupported, samePolicies, type AuthMethod, type MethodContext } from '../method.ts';
import { parseTokenParams, tokenParamsSchema, tokenParamsView, type TokenParams } from '../token-params.ts';

interface KubeConfig {
  kubernetesHost: string;
  kubernetesCaCert: string;
  tokenReviewerJwt: string;
  pemKeys: string[];
  issuer: string;
  disableIssValidation: boolean;
  disableLocalCaJwt: boolean;
}

interface KubeRole {
  name: string;
  boundServiceAccountNames: string[];
  boundServiceAccountNamespaces: string[];
  audience: string;
  aliasNameSource: 'serviceaccount_uid' | 'serviceaccount_name';
  token: TokenParams;
}

interface ServiceAccount {
  namespace: string;
  name: string;
  uid: string;
  secretName: string;
}

const ROLE_NAME = /^[\w.@-]{1,128}$/;
const TOKEN_REVIEW_PATH = '/apis/authentication.k8s.io/v1/tokenreviews';

const UNSUPPORTED_CONFIG: Record<string, string> = {
  use_annotations_as_alias_metadata: 'service-account annotations are not read',
};
const UNSUPPORTED_ROLE: Record<string, string> = {
  bound_service_account_namespace_selector: 'namespace label selectors are not implemented; use bound_service_account_namespaces',
};

/** Legacy and projected service-account claims; JwtRejected when neither shape is there. */
export function serviceAccountOf(claims: Record<string, unknown>): ServiceAccount {
  const projected = claims['kubernetes.io'];
  if (projected !== null && typeof projected === 'object') {
    const p = projected as { namespace?: unknown; serviceaccount?: { name?: unknown; uid?: unknown } };
    if (typeof p.namespace === 'string' && typeof p.serviceaccount?.name === 'string') {
      return { namespace: p.namespace, name: p.serviceaccount.name, uid: typeof p.serviceaccount.uid === 'string' ? p.serviceaccount.uid : '', secretName: '' };
    }
  }
  const ns = claims['kubernetes.io/serviceaccount/namespace'];
  const name = claims['kubernetes.io/serviceaccount/service-account.name'];
  if (typeof ns === 'string' && typeof name === 'string') {
    const uid = claims['kubernetes.io/serviceaccount/service-account.uid'];
    const secret = claims['kubernetes.io/serviceaccount/secret.name'];
    return { namespace: ns, name, uid: typeof uid === 'string' ? uid : '', secretName: typeof secret === 'string' ? secret : '' };
  }
  throw new JwtRejected('the JWT is not a Kubernetes service-account token (no namespace / service account claims)');
}

export class KubernetesMethod implements AuthMethod {
  private keys: { id: string; source: StaticKeys } | undefined;

  constructor(private readonly ctx: MethodContext) {}

  private path(rest: string): string {
    return `auth/${this.ctx.mount.path}${rest}`;
  }

  private async writeConfig(body: Record<string, unknown>): Promise<void> {
    refuseUnsupported(body, UNSUPPORTED_CONFIG);
    const host = typeof body.kubernetes_host === 'string' ? body.kubernetes_host.trim().replace(/\/+$/, '') : '';
    if (!host) throw errors.BAD_REQUEST('missing required field "kubernetes_host"');
    let parsed: URL;
    try {
      parsed = new URL(host);
    } catch {
      throw errors.BAD_FIELD('kubernetes_host', 'is not a URL (e.g. https://kubernetes.default.svc)');
    }
    if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw errors.BAD_FIELD('kubernetes_host', 'must be an https (or http) URL');
    const ca = typeof body.kubernetes_ca_cert === 'string' ? body.kubernetes_ca_cert.trim() : '';
    if (ca) {
      try {
        new X509Certificate(ca);
      } catch {
        throw errors.BAD_FIELD('kubernetes_ca_cert', 'is not a PEM certificate');
      }
    }
    const pemKeys = listField({ k: Array.isArray(body.pem_keys) ? body.pem_keys : body.pem_keys ? [body.pem_keys] : [] }, 'k') ?? [];
    parsePublicKeys('pem_keys', pemKeys);
    const reviewer = typeof body.token_reviewer_jwt === 'string' ? body.token_reviewer_jwt.trim() : '';
    if (reviewer) {
      try {
        headerOf(reviewer);
      } catch {
        throw errors.BAD_FIELD('token_reviewer_jwt', 'is not a JWT');
      }
    }
    const config: KubeConfig = {
      kubernetesHost: host,
      kubernetesCaCert: ca,
      tokenReviewerJwt: reviewer,
      pemKeys,
      issuer: typeof body.issuer === 'string' ? body.issuer : '',
      disableIssValidation: typeof body.disable_iss_validation === 'boolean' ? body.disable_iss_validation : true,
      disableLocalCaJwt: typeof body.disable_local_ca_jwt === 'boolean' ? body.disable_local_ca_jwt : false,
    };
    await this.ctx.store.put('config', config);
  }

  private configView(c: KubeConfig): Record<string, unknown> {
    // token_reviewer_jwt is write-only (Vault shows only whether it is set).
    return {
      kubernetes_host: c.kubernetesHost,
      kubernetes_ca_cert: c.kubernetesCaCert,
      token_reviewer_jwt_set: c.tokenReviewerJwt !== '',
      pem_keys: c.pemKeys,
      issuer: c.issuer,
      disable_iss_validation: c.disableIssValidation,
      disable_local_ca_jwt: c.disableLocalCaJwt,
      use_annotations_as_alias_metadata: false,
    };
  }

  private roleName(ctx: RequestContext): string {
    const n = ctx.params.name!;
    if (!ROLE_NAME.test(n)) throw errors.BAD_FIELD('name', 'may contain only letters, digits, "_", ".", "@" and "-" (at most 128)');
    return n;
  }

  private async writeRole(body: Record<string, unknown>, name: string): Promise<void> {
    refuseUnsupported(body, UNSUPPORTED_ROLE);
    const existing = await this.ctx.store.get<KubeRole>(`role/${name}`);
    const source = body.alias_name_source ?? existing?.aliasNameSource ?? 'serviceaccount_uid';
    if (source !== 'serviceaccount_uid' && source !== 'serviceaccount_name') throw errors.BAD_FIELD('alias_name_source', 'must be "serviceaccount_uid" or "serviceaccount_name"');
    const role: KubeRole = {
      name,
      boundServiceAccountNames: listField(body, 'bound_service_account_names') ?? existing?.boundServiceAccountNames ?? [],
      boundServiceAccountNamespaces: listField(body, 'bound_service_account_namespaces') ?? existing?.boundServiceAccountNamespaces ?? [],
      audience: typeof body.audience === 'string' ? body.audience : (existing?.audience ?? ''),
      aliasNameSource: source,
      token: parseTokenParams(body, existing?.token),
    };
    if (role.boundServiceAccountNames.length === 0) throw errors.BAD_REQUEST('missing required field "bound_service_account_names"');
    if (role.boundServiceAccountNamespaces.length === 0) throw errors.BAD_REQUEST('missing required field "bound_service_account_namespaces"');
    // Vault: "*" for both would let every service account of the cluster in.
    if (role.boundServiceAccountNames.includes('*') && role.boundServiceAccountNamespaces.includes('*')) {
      throw errors.BAD_REQUEST('bound_service_account_names and bound_service_account_namespaces can not both be set to "*"');
    }
    await this.ctx.store.put(`role/${name}`, role);
  }

  private roleView(r: KubeRole): Record<string, unknown> {
    return {
      bound_service_account_names: r.boundServiceAccountNames,
      bound_service_account_namespaces: r.boundServiceAccountNamespaces,
      bound_service_account_namespace_selector: '',
      audience: r.audience,
      alias_name_source: r.aliasNameSource,
      ...tokenParamsView(r.token),
    };
  }

  private keySource(config: KubeConfig): StaticKeys {
    const id = config.pemKeys.join('\n');
    if (!this.keys || this.keys.id !== id) this.keys = { id, source: new StaticKeys(parsePublicKeys('pem_keys', config.pemKeys)) };
    return this.keys.source;
  }

  /** Local mode: signature and times; returns the verified claims. */
  private async verifyLocally(jwt: string, config: KubeConfig): Promise<Record<string, unknown>> {
    const payload = await this.keySource(config).verify(jwt, ASYMMETRIC_ALGS);
    const claims = JSON.parse(Buffer.from(payload).toString('utf8')) as Record<string, unknown>;
    checkTimes(claims, { clockSkew: 60, expiration: 0, notBefore: 0, requireExp: false });
    return claims;
  }

  /** TokenReview mode: the API server says whether the token is valid and whose it is. */
  private async review(jwt: string, config: KubeConfig, role: KubeRole): Promise<{ namespace: string; name: string; uid: string }> {
    const bearer = config.tokenReviewerJwt || jwt;
    let res: { status: number; body: unknown };
    try {
      res = await fetchJson(
        config.kubernetesHost + TOKEN_REVIEW_PATH,
        {
          method: 'POST',
          headers: { authorization: `Bearer ${bearer}` },
          body: JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: jwt, ...(role.audience ? { audiences: [role.audience] } : {}) } }),
          ...(config.kubernetesCaCert ? { caPem: config.kubernetesCaCert } : {}),
        },
        (s) => s < 500,
      );
    } catch (err) {
      if (err instanceof FetchError) throw errors.AUTH_UPSTREAM(`the Kubernetes TokenReview API could not be used: ${err.message}`);
      throw err;
    }
    if (res.status === 401 || res.status === 403) throw new JwtRejected(`the Kubernetes API refused the TokenReview (HTTP ${res.status}): check token_reviewer_jwt and its system:auth-delegator binding`, 403);
    if (res.status >= 400) throw errors.AUTH_UPSTREAM(`the Kubernetes TokenReview API answered HTTP ${res.status}`);
    const status = (res.body as { status?: { authenticated?: unknown; error?: unknown; user?: { username?: unknown; uid?: unknown }; audiences?: unknown } }).status;
    if (status?.authenticated !== true) {
      const why = typeof status?.error === 'string' && status.error ? `: ${status.error.slice(0, 200)}` : '';
      throw new JwtRejected(`the Kubernetes API did not authenticate the token${why}`, 403);
    }
    const username = typeof status.user?.username === 'string' ? status.user.username : '';
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(username);
    if (!m) throw new JwtRejected('the token does not belong to a service account (TokenReview username)', 403);
    if (role.audience && Array.isArray(status.audiences) && !status.audiences.includes(role.audience)) {
      throw new JwtRejected('the token is not valid for the role\'s audience (TokenReview)', 403);
    }
    return { namespace: m[1]!, name: m[2]!, uid: typeof status.user?.uid === 'string' ? status.user.uid : '' };
  }

  private async login(ctx: RequestContext) {
    const config = await this.ctx.store.get<KubeConfig>('config');
    if (!config) throw errors.BAD_REQUEST(`${this.path('config')} is not set`);
    const roleName = typeof ctx.body.role === 'string' ? ctx.body.role : '';
    if (!roleName) throw errors.BAD_REQUEST('missing required field "role"');
    const role = await this.ctx.store.get<KubeRole>(`role/${roleName}`);
    if (!role) throw this.ctx.loginFailed(ctx, `unknown role "${roleName.slice(0, 128)}"`, errors.LOGIN_FAILED(`invalid role name "${roleName.slice(0, 128)}"`));
    const jwt = ctx.body.jwt;
    if (typeof jwt !== 'string' || jwt === '') throw errors.BAD_REQUEST('missing required field "jwt"');
    if (!addressAllowed(role.token.boundCidrs, ctx.remoteAddress)) {
      throw this.ctx.loginFailed(ctx, `role "${role.name}": client address is outside token_bound_cidrs`, errors.LOGIN_DENIED('login request originated from invalid CIDR'));
    }
    let sa: ServiceAccount;
    try {
      const claims = config.pemKeys.length > 0 ? await this.verifyLocally(jwt, config) : unverifiedClaims(jwt);
      sa = serviceAccountOf(claims);
      if (config.issuer && !config.disableIssValidation && claims.iss !== config.issuer) throw new JwtRejected('the JWT issuer ("iss") does not match the configured issuer');
      if (!role.boundServiceAccountNamespaces.some((g) => globMatch(g, sa.namespace))) throw new JwtRejected(`namespace "${sa.namespace.slice(0, 64)}" is not authorized (bound_service_account_namespaces)`, 403);
      if (!role.boundServiceAccountNames.some((g) => globMatch(g, sa.name))) throw new JwtRejected(`service account "${sa.name.slice(0, 64)}" is not authorized (bound_service_account_names)`, 403);
      if (config.pemKeys.length > 0) {
        if (role.audience && !audiences(claims).includes(role.audience)) throw new JwtRejected('the JWT audience ("aud") does not match the role\'s audience');
      } else {
        const reviewed = await this.review(jwt, config, role);
        if (reviewed.namespace !== sa.namespace || reviewed.name !== sa.name) throw new JwtRejected('the TokenReview names another service account than the JWT claims', 403);
        if (reviewed.uid) sa.uid = reviewed.uid;
      }
    } catch (err) {
      if (!(err instanceof JwtRejected)) throw err;
      throw this.ctx.loginFailed(ctx, `role "${role.name}": ${err.message}`, err.status === 403 ? errors.LOGIN_DENIED(err.message) : errors.LOGIN_FAILED(err.message));
    }
    const metadata = {
      service_account_name: sa.name,
      service_account_namespace: sa.namespace,
      service_account_uid: sa.uid,
      service_account_secret_name: sa.secretName,
      role: role.name,
    };
    const aliasName = role.aliasNameSource === 'serviceaccount_name' ? `${sa.namespace}/${sa.name}` : sa.uid;
    return this.ctx.issue({ params: role.token, displayName: `${sa.namespace}-${sa.name}`, metadata, aliasName }, ctx);
  }

  async renewCheck(meta: Record<string, string>, policies: string[]): Promise<string | undefined> {
    const role = meta.role === undefined ? undefined : await this.ctx.store.get<KubeRole>(`role/${meta.role}`);
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
        schema: object({
          kubernetes_host: { type: 'string', maxLength: 2048 },
          kubernetes_ca_cert: { type: 'string', maxLength: 65536 },
          token_reviewer_jwt: { type: 'string', maxLength: 65536 },
          pem_keys: stringList,
          issuer: { type: 'string', maxLength: 2048 },
          disable_iss_validation: { type: 'boolean' },
          disable_local_ca_jwt: { type: 'boolean' },
          use_annotations_as_alias_metadata: anyValue,
        }),
        handler: async (ctx) => {
          if (ctx.method === 'PUT') return void (await this.writeConfig(ctx.body));
          const c = await this.ctx.store.get<KubeConfig>('config');
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
        schema: object({
          ...tokenParamsSchema,
          bound_service_account_names: stringList,
          bound_service_account_namespaces: stringList,
          bound_service_account_namespace_selector: anyValue,
          audience: { type: 'string', maxLength: 1024 },
          alias_name_source: { type: 'string', maxLength: 64 },
        }),
        handler: async (ctx) => {
          const n = this.roleName(ctx);
          if (ctx.method === 'PUT') return void (await this.writeRole(ctx.body, n));
          if (ctx.method === 'DELETE') return void (await this.ctx.store.delete(`role/${n}`));
          const r = await this.ctx.store.get<KubeRole>(`role/${n}`);
          if (!r) throw errors.ENTRY_NOT_FOUND(this.path(`role/${n}`));
          return { data: this.roleView(r) };
        },
      },
    ];
  }
}
