// Test-only OpenID provider configured like HelseID (see shared helseid.md sections 1-4, 8).
//
// Usage: node server.mjs <config.json>
//
// The config file holds {"port", "host", "token_lifetime", "clients": [...]}; each client is
// {"client_id", "jwks": {"keys": [public JWKs]}, "tenancy": "single"|"multi",
//  "organization_number", "scopes": [...], "resources": {"<resource>": [scopes]},
//  optional "redirect_uris": [...], optional "child_organization_numbers": [...]}.
//
// When listening, exactly one JSON line {"issuer": "http://<host>:<port>"} is written to stdout.
// Everything else (including oidc-provider's own notices) goes to stderr. SIGTERM/SIGINT stop it;
// with OIDC_PROVIDER_EXIT_ON_STDIN_EOF=1 it also stops when its stdin is closed (parent gone).
// The provider's signing key is generated in memory at start-up and never written anywhere.
// Logs carry error codes and descriptions only, never tokens, assertions or keys.

import * as crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';

// oidc-provider prints development notices with console.info (stdout). stdout is reserved for the
// ready line, so route all console output to stderr before the library is loaded.
console.log = console.error;
console.info = console.error;

const { default: Provider, errors } = await import('oidc-provider');
const { exportJWK, generateKeyPair, decodeJwt } = await import('jose');

const CLIENT_ASSERTION_TYP = 'client-authentication+jwt';
const MAX_ASSERTION_LIFETIME = 60; // seconds between iat/nbf and exp (HelseID's documented cap)
// HelseID's approved algorithms, for client assertions and DPoP proofs alike.
const APPROVED_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'];

const MULTI_TENANT_SYSTEM = 'urn:oid:1.0.6523';
const SINGLE_TENANT_SYSTEM = 'urn:oid:2.16.578.1.12.4.1.4.101';
const HELSEID_AUTHORIZATION = 'helseid_authorization';
const JOURNAL_ID_TYPE = 'nhn:sfm:journal-id';
const CLAIM = {
  tenancy: 'helseid://claims/client/client_tenancy',
  parent: 'helseid://claims/client/claims/orgnr_parent',
  child: 'helseid://claims/client/claims/orgnr_child',
  supplier: 'helseid://claims/client/claims/orgnr_supplier',
  journalId: 'nhn:sfm:journal-id',
};
const ORGNR = /^\d{9}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const TOKEN_ROUTE = '/connect/token';

function log(message) {
  process.stderr.write(`[oidc-provider] ${message}\n`);
}

function loadConfig(path) {
  const config = JSON.parse(readFileSync(path, 'utf8'));
  if (!Array.isArray(config.clients)) {
    throw new TypeError('config.clients must be an array');
  }
  for (const client of config.clients) {
    if (typeof client.client_id !== 'string' || !client.client_id) {
      throw new TypeError('every client needs a client_id');
    }
    if (!Array.isArray(client.jwks?.keys) || client.jwks.keys.length === 0) {
      throw new TypeError(`client ${client.client_id}: jwks.keys must be a non-empty array`);
    }
    for (const key of client.jwks.keys) {
      if (key.d !== undefined || key.p !== undefined || key.k !== undefined) {
        throw new TypeError(`client ${client.client_id}: jwks must hold public keys only`);
      }
    }
    if (!['single', 'multi'].includes(client.tenancy)) {
      throw new TypeError(`client ${client.client_id}: tenancy must be "single" or "multi"`);
    }
    if (!ORGNR.test(String(client.organization_number ?? ''))) {
      throw new TypeError(`client ${client.client_id}: organization_number must be 9 digits`);
    }
  }
  return {
    host: config.host ?? '127.0.0.1',
    port: config.port ?? 0,
    tokenLifetime: config.token_lifetime ?? 300,
    clients: config.clients,
  };
}

if (!process.argv[2]) {
  log('usage: node server.mjs <config.json>');
  process.exit(2);
}
const config = loadConfig(process.argv[2]);
const clientsById = new Map(config.clients.map((client) => [client.client_id, client]));

// ---- HelseID structured claims from the client assertion ------------------------------------

function invalidDetails(description) {
  return new errors.InvalidRequest(description);
}

// Parses assertion_details (or the older authorization_details) of the client assertion of the
// current token request into HelseID access-token claims. The assertion was already verified by
// client authentication before any grant handler runs.
function helseIdClaimsFromAssertion(ctx, client) {
  const assertion = ctx.oidc.params?.client_assertion;
  if (typeof assertion !== 'string') {
    return {};
  }
  const payload = decodeJwt(assertion);
  if (payload.assertion_details !== undefined && payload.authorization_details !== undefined) {
    throw invalidDetails('send either assertion_details or authorization_details, not both');
  }
  let details = payload.assertion_details ?? payload.authorization_details;
  if (details === undefined) {
    return {};
  }
  if (ctx.oidc.params.grant_type === 'authorization_code') {
    // HelseID rule HID-1009: organisations go on the refresh_token grant, not on code redemption.
    throw invalidDetails('organisation details are not accepted when redeeming an authorization code (HID-1009)');
  }
  if (!Array.isArray(details)) {
    details = [details];
  }

  const claims = {};
  for (const detail of details) {
    if (detail === null || typeof detail !== 'object') {
      throw invalidDetails('assertion_details entries must be objects');
    }
    if (detail.type === HELSEID_AUTHORIZATION) {
      const identifier = detail.practitioner_role?.organization?.identifier;
      if (!identifier || typeof identifier.value !== 'string') {
        throw invalidDetails('helseid_authorization needs practitioner_role.organization.identifier.value');
      }
      if (client.tenancy === 'multi') {
        if (identifier.system !== MULTI_TENANT_SYSTEM) {
          throw invalidDetails(`multi-tenant clients must use identifier system ${MULTI_TENANT_SYSTEM}`);
        }
        // NO:ORGNR:<parent>, NO:ORGNR:<parent>: or NO:ORGNR:<parent>:<child>
        const match = /^NO:ORGNR:(\d+)(?::(\d*))?$/.exec(identifier.value);
        if (!match) {
          throw invalidDetails('multi-tenant identifier value must be NO:ORGNR:<parent>[:<child>]');
        }
        const [, parent, child] = match;
        if (!ORGNR.test(parent) || (child && !ORGNR.test(child))) {
          throw invalidDetails('organization numbers must be 9 digits');
        }
        claims[CLAIM.parent] = parent;
        if (child) {
          claims[CLAIM.child] = child;
        }
      } else {
        if (identifier.system !== SINGLE_TENANT_SYSTEM) {
          throw invalidDetails(`single-tenant clients must use identifier system ${SINGLE_TENANT_SYSTEM}`);
        }
        if (!ORGNR.test(identifier.value)) {
          throw invalidDetails('organization numbers must be 9 digits');
        }
        const allowed = client.child_organization_numbers;
        if (Array.isArray(allowed) && !allowed.includes(identifier.value)) {
          throw invalidDetails('child organization number is not whitelisted for the client');
        }
        claims[CLAIM.child] = identifier.value;
      }
    } else if (detail.type === JOURNAL_ID_TYPE) {
      const journalId = detail.value?.journal_id;
      if (typeof journalId !== 'string' || !UUID.test(journalId)) {
        throw invalidDetails('nhn:sfm:journal-id needs value.journal_id as a UUID');
      }
      claims[CLAIM.journalId] = journalId;
    } else {
      throw invalidDetails('unsupported assertion_details type');
    }
  }
  return claims;
}

async function extraTokenClaims(ctx, token) {
  const client = clientsById.get(token.clientId);
  if (!client || !ctx) {
    return undefined;
  }
  const claims = {
    client_id: client.client_id,
    client_amr: 'private_key_jwt',
    [CLAIM.tenancy]: client.tenancy === 'multi' ? 'multi-tenant' : 'single-tenant',
  };
  const fromAssertion = helseIdClaimsFromAssertion(ctx, client);
  if (client.tenancy === 'multi') {
    // A multi-tenant token requested without organisations carries no organisation claims.
    if (fromAssertion[CLAIM.parent]) {
      claims[CLAIM.supplier] = client.organization_number;
    }
  } else {
    claims[CLAIM.parent] = client.organization_number;
  }
  return { ...claims, ...fromAssertion, ...await userClaims(ctx, token) };
}

// HelseID puts the user's identity claims into the access token for the identity scopes granted.
async function userClaims(ctx, token) {
  if (!token.accountId) {
    return {};
  }
  const grant = ctx.oidc.entities?.Grant ?? (token.grantId && await ctx.oidc.provider.Grant.find(token.grantId));
  const granted = new Set(grant ? grant.getOIDCScope().split(' ') : []);
  const account = await findAccount(ctx, token.accountId);
  const all = await account.claims();
  const claims = {};
  for (const [scope, names] of Object.entries(IDENTITY_SCOPES)) {
    if (scope.startsWith('helseid://') && granted.has(scope)) {
      for (const name of names) {
        claims[name] = all[name];
      }
    }
  }
  return claims;
}

// ---- client assertion rules beyond RFC 7523 ----------------------------------------------------

async function assertJwtClientAuthClaimsAndHeader(_ctx, claims, header) {
  if (header.typ !== CLIENT_ASSERTION_TYP) {
    throw new errors.InvalidClientAuth(`client assertion header typ must be ${CLIENT_ASSERTION_TYP}`);
  }
  if (claims.sub !== claims.iss) {
    throw new errors.InvalidClientAuth('client assertion sub must equal iss');
  }
  const start = claims.iat ?? claims.nbf;
  if (typeof start !== 'number') {
    throw new errors.InvalidClientAuth('client assertion must carry iat');
  }
  if (claims.exp - start > MAX_ASSERTION_LIFETIME) {
    throw new errors.InvalidClientAuth(`client assertion lifetime must be at most ${MAX_ASSERTION_LIFETIME} s`);
  }
}

// ---- resources (RFC 8707) ----------------------------------------------------------------------

function requestedScopes(ctx) {
  const { scope } = ctx.oidc.params ?? {};
  return typeof scope === 'string' ? scope.split(' ').filter(Boolean) : [];
}

// HelseID derives the audience from the scopes when no resource parameter is sent; do the same
// when exactly one of the client's resources holds the requested scopes.
async function defaultResource(ctx, client, oneOf) {
  if (oneOf) {
    return oneOf;
  }
  const entry = clientsById.get(client.clientId);
  if (!entry?.resources) {
    return undefined;
  }
  const scopes = requestedScopes(ctx);
  const matching = Object.entries(entry.resources)
    .filter(([, allowed]) => scopes.some((scope) => allowed.includes(scope)))
    .map(([resource]) => resource);
  return matching.length === 1 ? matching[0] : undefined;
}

async function getResourceServerInfo(ctx, resource, client) {
  const entry = clientsById.get(client.clientId);
  const allowed = entry?.resources?.[resource];
  if (!allowed) {
    throw new errors.InvalidTarget('resource is not registered for the client');
  }
  if (ctx.oidc.route === 'token' && ctx.oidc.params?.grant_type === 'client_credentials') {
    const statics = new Set(entry.scopes ?? []);
    const unknown = requestedScopes(ctx).filter((scope) => !allowed.includes(scope) && !statics.has(scope));
    if (unknown.length) {
      throw new errors.InvalidScope('requested scope is not allowed', unknown.join(' '));
    }
  }
  return {
    scope: allowed.join(' '),
    audience: resource,
    accessTokenTTL: config.tokenLifetime,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'RS256' } },
  };
}

// ---- users (for later authorization-code work; devInteractions logs in any name) ---------------

const IDENTITY_SCOPES = {
  'helseid://scopes/identity/pid': ['helseid://claims/identity/pid'],
  'helseid://scopes/identity/pid_pseudonym': ['helseid://claims/identity/pid_pseudonym'],
  'helseid://scopes/identity/assurance_level': ['helseid://claims/identity/assurance_level'],
  'helseid://scopes/identity/security_level': ['helseid://claims/identity/security_level'],
  'helseid://scopes/identity/network': ['helseid://claims/identity/network'],
  'helseid://scopes/hpr/hpr_number': ['helseid://claims/hpr/hpr_number'],
  profile: ['name', 'given_name', 'family_name'],
};

const STATIC_SCOPES = ['openid', 'offline_access', ...Object.keys(IDENTITY_SCOPES)];

async function findAccount(_ctx, accountId) {
  return {
    accountId,
    async claims() {
      const pid = /^\d{11}$/.test(accountId) ? accountId : '13116900216';
      return {
        sub: accountId,
        name: `Test ${accountId}`,
        given_name: 'Test',
        family_name: accountId,
        'helseid://claims/identity/pid': pid,
        'helseid://claims/identity/pid_pseudonym': crypto.hash('sha256', pid, 'base64'),
        'helseid://claims/identity/assurance_level': 'high',
        'helseid://claims/identity/security_level': '4',
        'helseid://claims/identity/network': 'internett',
        'helseid://claims/hpr/hpr_number': '565501872',
      };
    },
  };
}

// ---- provider ----------------------------------------------------------------------------------

function clientMetadata(client) {
  const redirectUris = client.redirect_uris ?? [];
  const interactive = redirectUris.length > 0;
  return {
    client_id: client.client_id,
    jwks: client.jwks,
    token_endpoint_auth_method: 'private_key_jwt',
    grant_types: interactive
      ? ['client_credentials', 'authorization_code', 'refresh_token']
      : ['client_credentials'],
    response_types: interactive ? ['code'] : [],
    redirect_uris: redirectUris,
    dpop_bound_access_tokens: true,
    // Client metadata may only name the provider's own (OpenID/identity) scopes; API scopes are
    // governed per resource by getResourceServerInfo.
    scope: [...new Set([...(client.scopes ?? []), ...(interactive ? ['openid', 'offline_access'] : [])])]
      .filter((scope) => STATIC_SCOPES.includes(scope))
      .join(' ') || undefined,
  };
}

async function signingJwks() {
  const { privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const jwk = await exportJWK(privateKey);
  return { keys: [{ ...jwk, alg: 'RS256', use: 'sig', kid: crypto.randomBytes(16).toString('hex') }] };
}

const stats = { token_requests: 0, nonce_challenges: 0 };

async function main() {
  const server = http.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, resolve);
  });
  const { port } = server.address();
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const issuer = `http://${host}:${port}`;

  const provider = new Provider(issuer, {
    clients: config.clients.map(clientMetadata),
    jwks: await signingJwks(),
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    clientAuthMethods: ['private_key_jwt'],
    enabledJWA: {
      clientAuthSigningAlgValues: APPROVED_ALGS,
      dPoPSigningAlgValues: APPROVED_ALGS,
      requestObjectSigningAlgValues: APPROVED_ALGS,
      idTokenSigningAlgValues: ['RS256'],
    },
    assertJwtClientAuthClaimsAndHeader,
    clockTolerance: 5,
    features: {
      clientCredentials: { enabled: true },
      dPoP: {
        enabled: true,
        nonceSecret: crypto.randomBytes(32),
        requireNonce: () => true,
        allowReplay: false,
      },
      resourceIndicators: {
        enabled: true,
        defaultResource,
        getResourceServerInfo,
        useGrantedResource: async () => true,
      },
      pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: false },
      introspection: { enabled: true },
      revocation: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      devInteractions: { enabled: true },
    },
    extraTokenClaims,
    pkce: { required: () => true },
    responseTypes: ['code'],
    scopes: STATIC_SCOPES,
    claims: { openid: ['sub'], ...IDENTITY_SCOPES },
    findAccount,
    rotateRefreshToken: () => true,
    ttl: {
      AccessToken: config.tokenLifetime,
      ClientCredentials: config.tokenLifetime,
      AuthorizationCode: 60,
      IdToken: config.tokenLifetime,
      Interaction: 600,
      Session: 8 * 3600,
      Grant: 8 * 3600,
      RefreshToken: 8 * 3600,
    },
    routes: {
      authorization: '/connect/authorize',
      token: TOKEN_ROUTE,
      pushed_authorization_request: '/connect/par',
      userinfo: '/connect/userinfo',
      end_session: '/connect/endsession',
      revocation: '/connect/revocation',
      introspection: '/connect/introspect',
      jwks: '/.well-known/openid-configuration/jwks',
    },
  });

  provider.use(async (ctx, next) => {
    if (ctx.path === '/dev/stats') {
      if (ctx.method === 'GET') {
        ctx.body = { ...stats };
        return;
      }
      if (ctx.method === 'DELETE') {
        stats.token_requests = 0;
        stats.nonce_challenges = 0;
        ctx.status = 204;
        return;
      }
      ctx.status = 405;
      return;
    }
    const isToken = ctx.path === TOKEN_ROUTE && ctx.method === 'POST';
    if (isToken) {
      stats.token_requests += 1;
    }
    await next();
    if (isToken && ctx.status === 400 && ctx.body?.error === 'use_dpop_nonce') {
      stats.nonce_challenges += 1;
    }
  });

  for (const event of ['grant.error', 'pushed_authorization_request.error', 'authorization.error', 'server_error']) {
    provider.on(event, (ctx, err) => {
      const clientId = ctx?.oidc?.client?.clientId ?? '-';
      const description = err?.error_description ?? err?.message ?? '';
      const detail = err?.error_detail ? ` [${err.error_detail}]` : '';
      const cause = err?.cause?.message ? ` (${err.cause.message})` : '';
      log(`${event} client=${clientId} ${err?.error ?? err?.name}: ${description}${detail}${cause}`);
    });
  }
  provider.on('grant.success', (ctx) => {
    log(`grant.success client=${ctx.oidc.client?.clientId} grant_type=${ctx.oidc.params?.grant_type}`);
  });

  server.on('request', provider.callback());

  let stopping = false;
  const shutdown = (signal) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: stopping`);
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  if (process.env.OIDC_PROVIDER_EXIT_ON_STDIN_EOF === '1') {
    // The parent (the test run) holds our stdin open; when it goes away, so do we.
    process.stdin.on('end', () => shutdown('stdin closed'));
    process.stdin.on('error', () => shutdown('stdin error'));
    process.stdin.resume();
  }

  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
}

main().catch((err) => {
  log(`failed to start: ${err?.stack ?? err}`);
  process.exit(1);
});
