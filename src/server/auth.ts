// Bearer-token authentication and role checks. The tenant comes from the token's tenant_id
// claim and nowhere else. HS256 tokens are verified with the configured secret; `exp` is
// required, and `iss`/`aud` are checked when configured.
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../services/errors.ts';
import { ROLES, type Role, type RouteAccess } from './route-table.ts';

export interface AuthContext {
  subject: string;
  roles: Role[];
  tenantId: string | undefined;
}

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * Claims of the request's verified token. Set as soon as the token verifies, also when the
     * role check then rejects the request, so the rejection can be recorded for the tenant.
     */
    auth: AuthContext | undefined;
  }
  interface FastifyContextConfig {
    access?: RouteAccess;
  }
}

export interface AuthOptions {
  secret: Uint8Array;
  issuer?: string | undefined;
  audience?: string | undefined;
}

const MAX_CACHED_TOKENS = 10_000;

/**
 * Longest remaining lifetime a token may claim. A token that practically never expires cannot
 * be withdrawn by waiting, so it is rejected; `cdil token` issues at most this lifetime.
 */
export const MAX_TOKEN_LIFETIME_MS = 31 * 24 * 3600 * 1000;

function parseClaims(payload: Record<string, unknown>): AuthContext {
  const roles = payload.roles;
  if (
    !Array.isArray(roles) ||
    roles.length === 0 ||
    !roles.every((role) => ROLES.includes(role as Role))
  ) {
    throw new AppError(
      'UNAUTHENTICATED',
      `token claim roles must be a non-empty list of ${ROLES.join(', ')}`,
    );
  }
  const tenantId = payload.tenant_id;
  if (tenantId !== undefined && typeof tenantId !== 'string') {
    throw new AppError('UNAUTHENTICATED', 'token claim tenant_id must be a string');
  }
  return {
    subject: typeof payload.sub === 'string' ? payload.sub : 'unknown',
    roles: roles as Role[],
    tenantId,
  };
}

/** Verifies tokens, caching verified claims until their expiry so repeated tokens cost one lookup. */
export class TokenVerifier {
  readonly #options: AuthOptions;
  readonly #cache = new Map<string, { context: AuthContext; expiresAt: number }>();

  constructor(options: AuthOptions) {
    this.#options = options;
  }

  async verify(token: string): Promise<AuthContext> {
    const cached = this.#cache.get(token);
    if (cached && cached.expiresAt > Date.now()) {
      return cached.context;
    }
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, this.#options.secret, {
        algorithms: ['HS256'],
        issuer: this.#options.issuer,
        audience: this.#options.audience,
        requiredClaims: ['exp'],
      }));
    } catch (error) {
      const reason =
        error instanceof joseErrors.JWTExpired
          ? 'token has expired'
          : error instanceof joseErrors.JWTClaimValidationFailed
            ? `token claim ${error.claim} is ${error.reason === 'missing' ? 'missing' : 'invalid'}`
            : 'token is malformed or its signature is invalid';
      throw new AppError('UNAUTHENTICATED', reason);
    }
    if (Number(payload.exp) * 1000 - Date.now() > MAX_TOKEN_LIFETIME_MS) {
      throw new AppError('UNAUTHENTICATED', 'token claim exp is more than 31 days ahead');
    }
    const context = parseClaims(payload);
    if (this.#cache.size >= MAX_CACHED_TOKENS) {
      this.#cache.clear();
    }
    this.#cache.set(token, { context, expiresAt: Number(payload.exp) * 1000 });
    return context;
  }
}

export interface TokenRequest {
  subject: string;
  roles: Role[];
  tenantId?: string | undefined;
  ttlSeconds: number;
}

/** Issues an HS256 token for local use (development, tests and the demo). */
export async function signToken(options: AuthOptions, request: TokenRequest): Promise<string> {
  const claims: Record<string, unknown> = { roles: request.roles };
  if (request.tenantId !== undefined) {
    claims.tenant_id = request.tenantId;
  }
  let jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(request.subject)
    .setIssuedAt()
    .setExpirationTime(`${request.ttlSeconds}s`);
  if (options.issuer) {
    jwt = jwt.setIssuer(options.issuer);
  }
  if (options.audience) {
    jwt = jwt.setAudience(options.audience);
  }
  return jwt.sign(options.secret);
}

/**
 * onRequest hook: authenticates and authorizes according to the route's access entry. Route
 * handlers run only when both pass, so no handler runs with the claims of a rejected token.
 * A tenant-scoped route whose token names a tenant that `tenantExists` does not find is
 * rejected with TENANT_NOT_FOUND, so no route reports an empty result for a mistyped tenant.
 */
export function makeAuthHook(
  verifier: TokenVerifier,
  tenantExists: (tenantId: string) => Promise<boolean>,
) {
  return async (request: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const access = request.routeOptions.config.access;
    request.auth = undefined;
    if (!access || access.roles === 'public') {
      return;
    }
    const header = request.headers.authorization;
    // RFC 7235 section 2.1: the scheme is case-insensitive and one or more spaces follow it.
    const match = header ? /^bearer +([A-Za-z0-9._~+/-]+=*)$/i.exec(header) : null;
    if (!match) {
      throw new AppError('UNAUTHENTICATED', 'Authorization header must be "Bearer <token>"');
    }
    const auth = await verifier.verify(match[1]!);
    request.auth = auth;
    if (!auth.roles.some((role) => (access.roles as readonly Role[]).includes(role))) {
      const required =
        access.roles.length === 1
          ? `the ${access.roles[0]} role`
          : `one of the roles ${access.roles.join(', ')}`;
      throw new AppError('FORBIDDEN', `this endpoint requires ${required}`);
    }
    if (!access.tenantScoped) {
      return;
    }
    if (auth.tenantId === undefined) {
      throw new AppError('FORBIDDEN', 'this endpoint requires a token with a tenant_id claim');
    }
    if (!(await tenantExists(auth.tenantId))) {
      throw new AppError('TENANT_NOT_FOUND', 'tenant not found');
    }
  };
}

/** Returns the tenant of an authenticated tenant-scoped request. */
export function tenantOf(request: FastifyRequest): string {
  const tenantId = request.auth?.tenantId;
  if (tenantId === undefined) {
    throw new AppError('FORBIDDEN', 'this endpoint requires a token with a tenant_id claim');
  }
  return tenantId;
}
