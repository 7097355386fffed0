// Test-only OpenID provider configured like HelseID (see shared helseid.md sections 1-6, 8).
//
// Usage: node server.mjs <config.json>
//
// The config file holds {"port", "host", "token_lifetime", "refresh_token_lifetime", "clients": [...]};
// each client is
//   {"client_id", "jwks": {"keys": [public JWKs]}, "tenancy": "single"|"multi",
//    "organization_number", "scopes": [...], "resources": {"<resource>": [scopes]},
//    optional "redirect_uris": [...], optional "child_organization_numbers": [...],
//    optional "grant_types": [...]}.
// Default grant_types: client_credentials and token exchange (RFC 8693), plus authorization_code and
// refresh_token when the client has redirect_uris.
//
// What it does, like HelseID:
// - private_key_jwt only (typ client-authentication+jwt, sub = iss, lifetime <= 60 s, jti once);
// - DPoP on every token request, always with a server nonce (use_dpop_nonce first); also at PAR when
//   a DPoP header is sent there (dpop_jkt needs no nonce);
// - resource indicators; JWT access tokens with one aud; HelseID org claims from the client
//   assertion's assertion_details (or the older authorization_details; never both);
// - PAR (+ PKCE S256) with an optional signed request object (`request`, RFC 9101): signed with a key
//   of the client, iss = client_id, aud = issuer, client_id, jti (once), exp at most 60 s after
//   nbf/iat. As at HelseID the other PAR parameters may be sent next to it (values inside the request
//   object win). Its authorization_details (helseid_authorization, nhn:sfm:journal-id) become the org
//   claims of the user's tokens (code redemption and later refreshes; a refresh whose client
//   assertion carries assertion_details uses those instead). authorization_details outside a signed
//   request object are refused.
// - authorization code redemption refuses org details in the client assertion (HID-1009);
// - offline_access alone yields a refresh token (the provider adds the prompt=consent that
//   oidc-provider wants); rotating refresh tokens (reuse of a rotated one kills the whole grant);
//   the refresh-token lifetime is absolute from the login and reported as `rt_expires_in`;
// - token exchange (urn:ietf:params:oauth:grant-type:token-exchange) of an access token this provider
//   issued, for one resource of the actor client, with an `act` claim;
// - revocation (RFC 7009) and introspection with private_key_jwt.
//
// Users: the development login page (devInteractions) accepts any login name, any password.
// "kari" and "ola" are named test users; an 11-digit login is used as the pid; any other name gets a
// synthetic pid (month + 80, so never a real person's). `sub` is the login name.
// Scope -> claim mapping (ID token and user access tokens, for the scopes granted):
//   profile                                    -> name, given_name, middle_name, family_name
//   helseid://scopes/identity/pid              -> helseid://claims/identity/pid
//   helseid://scopes/identity/pid_pseudonym    -> helseid://claims/identity/pid_pseudonym
//   helseid://scopes/identity/assurance_level  -> helseid://claims/identity/assurance_level ("high")
//   helseid://scopes/identity/security_level   -> helseid://claims/identity/security_level ("4")
//   helseid://scopes/identity/network          -> helseid://claims/identity/network
//   helseid://scopes/hpr/hpr_number            -> helseid://claims/hpr/hpr_number
//
// When listening, exactly one JSON line {"issuer": "http://<host>:<port>"} is written to stdout.
// Everything else (including oidc-provider's own notices) goes to stderr. SIGTERM/SIGINT stop it;
// with OIDC_PROVIDER_EXIT_ON_STDIN_EOF=1 it also stops when its stdin is closed (parent gone).
// The provider's signing key is generated in memory at start-up and never written anywhere.
// Logs carry error codes and descriptions only, never tokens, assertions or keys.

import * as crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as querystring from 'node:querystring';

// oidc-provider prints development notices with console.info (stdout). stdout is reserved for the
// ready line, so route all console output to stderr before the library is loaded.
console.log = console.error;
console.info = console.error;

const { default: Provider, errors } = await import('oidc-provider');
// oidc-provider has no public helpers for custom grant types; the token-exchange handler uses the
// same internal helpers as the built-in grants (DPoP validation, replay check, token response).
// The package has no "exports" map, and the version is pinned in package.json.
const grantHelpers = await import('oidc-provider/lib/helpers/grants.js');
const { resourceServer: validateResourceServer } = await import('oidc-provider/lib/helpers/configuration_result.js');
const {
  createLocalJWKSet, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, jwtVerify,
} = await import('jose');

const CLIENT_ASSERTION_TYP = 'client-authentication+jwt';
const MAX_ASSERTION_LIFETIME = 60; // seconds between iat/nbf and exp (HelseID's documented cap)
const MAX_REQUEST_OBJECT_LIFETIME = 60;
const REQUEST_OBJECT_TYPS = ['oauth-authz-req+jwt', 'jwt'];
const CLOCK_TOLERANCE = 5;
// HelseID's approved algorithms, for client assertions, request objects and DPoP proofs alike.
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
const ORG_CLAIMS = [CLAIM.parent, CLAIM.child, CLAIM.supplier, CLAIM.journalId];
const ORGNR = /^\d{9}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

const ROUTES = {
  authorization: '/connect/authorize',
  token: '/connect/token',
  pushed_authorization_request: '/connect/par',
  userinfo: '/connect/userinfo',
  end_session: '/connect/endsession',
  revocation: '/connect/revocation',
  introspection: '/connect/introspect',
  jwks: '/.well-known/openid-configuration/jwks',
};

function log(message) {
  process.stderr.write(`[oidc-provider] ${message}\n`);
}

function epochTime() {
  return Math.floor(Date.now() / 1000);
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
    if (client.grant_types !== undefined && !Array.isArray(client.grant_types)) {
      throw new TypeError(`client ${client.client_id}: grant_types must be an array`);
    }
  }
  return {
    host: config.host ?? '127.0.0.1',
    port: config.port ?? 0,
    tokenLifetime: config.token_lifetime ?? 300,
    refreshTokenLifetime: config.refresh_token_lifetime ?? 8 * 3600,
    clients: config.clients,
  };
}

if (!process.argv[2]) {
  log('usage: node server.mjs <config.json>');
  process.exit(2);
}
const config = loadConfig(process.argv[2]);
const clientsById = new Map(config.clients.map((client) => [client.client_id, client]));

// ---- HelseID structured claims (assertion_details / authorization_details) ----------------------

function invalidDetails(description) {
  return new errors.InvalidRequest(description);
}

// Turns HelseID detail objects into access-token claims for `client` (a config entry); throws
// invalid_request on anything HelseID would refuse.
function claimsFromDetails(details, client) {
  const list = Array.isArray(details) ? details : [details];
  const claims = {};
  for (const detail of list) {
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

// The details in the client assertion of the current token request (already verified by client
// authentication before any grant handler runs), or undefined.
function detailsFromAssertion(ctx) {
  const assertion = ctx.oidc.params?.client_assertion;
  if (typeof assertion !== 'string') {
    return undefined;
  }
  const payload = decodeJwt(assertion);
  if (payload.assertion_details !== undefined && payload.authorization_details !== undefined) {
    throw invalidDetails('send either assertion_details or authorization_details, not both');
  }
  const details = payload.assertion_details ?? payload.authorization_details;
  if (details !== undefined && ctx.oidc.params.grant_type === 'authorization_code') {
    // HelseID rule HID-1009: organisations go on the refresh_token grant, not on code redemption.
    throw invalidDetails('organisation details are not accepted when redeeming an authorization code (HID-1009)');
  }
  return details;
}

// Org claims of a token: from the client assertion when it carries details, otherwise from the
// signed request object of the login (stored by oidc-provider as `rar` on the code and on every
// refresh token of the grant).
function organisationClaims(ctx, client) {
  const fromAssertion = detailsFromAssertion(ctx);
  if (fromAssertion !== undefined) {
    return claimsFromDetails(fromAssertion, client);
  }
  const source = ctx.oidc.entities?.AuthorizationCode ?? ctx.oidc.entities?.RefreshToken;
  if (source?.rar?.length) {
    return claimsFromDetails(source.rar, client);
  }
  return {};
}

// Client claims, with the supplier/parent rule of HelseID's tenancies.
function clientClaims(client, orgClaims) {
  const claims = {
    client_id: client.client_id,
    client_amr: 'private_key_jwt',
    [CLAIM.tenancy]: client.tenancy === 'multi' ? 'multi-tenant' : 'single-tenant',
  };
  if (client.tenancy === 'multi') {
    // A multi-tenant token requested without organisations carries no organisation claims.
    if (orgClaims[CLAIM.parent]) {
      claims[CLAIM.supplier] = client.organization_number;
    }
  } else {
    claims[CLAIM.parent] = client.organization_number;
  }
  return { ...claims, ...orgClaims };
}

// Claims computed by the token-exchange handler for the access token it issues.
const exchangedTokenClaims = new WeakMap();

async function extraTokenClaims(ctx, token) {
  const exchanged = exchangedTokenClaims.get(token);
  if (exchanged) {
    return exchanged;
  }
  const client = clientsById.get(token.clientId);
  if (!client || !ctx) {
    return undefined;
  }
  return { ...clientClaims(client, organisationClaims(ctx, client)), ...await userClaims(ctx, token) };
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
    if (granted.has(scope)) {
      for (const name of names) {
        if (all[name] !== undefined) {
          claims[name] = all[name];
        }
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

// ---- request objects (RFC 9101) -----------------------------------------------------------------

// Request objects are single-use (jti). A PAR that fails (for instance with use_dpop_nonce) does
// not use up its request object's jti.
const seenRequestObjects = new Map(); // `${client_id} ${jti}` -> epoch seconds until which it is kept

function assertFreshRequestObject(clientId, jti) {
  const now = epochTime();
  for (const [key, until] of seenRequestObjects) {
    if (until < now) {
      seenRequestObjects.delete(key);
    }
  }
  if (seenRequestObjects.has(`${clientId} ${jti}`)) {
    throw new errors.InvalidRequestObject('request object jti was already used');
  }
}

function recordRequestObject({ clientId, jti, exp }) {
  seenRequestObjects.set(`${clientId} ${jti}`, exp + CLOCK_TOLERANCE);
}

// HelseID's rules for request objects, beyond signature, iss, aud and exp (checked by the caller).
function assertRequestObjectRules(payload, header, clientId) {
  if (header.typ !== undefined && !REQUEST_OBJECT_TYPS.includes(String(header.typ).toLowerCase())) {
    throw new errors.InvalidRequestObject(`request object typ must be one of ${REQUEST_OBJECT_TYPS.join(', ')}`);
  }
  if (payload.client_id !== clientId) {
    throw new errors.InvalidRequestObject('request object client_id must equal the client_id');
  }
  if (typeof payload.exp !== 'number') {
    throw new errors.InvalidRequestObject('request object must carry exp');
  }
  const start = payload.nbf ?? payload.iat;
  if (typeof start !== 'number') {
    throw new errors.InvalidRequestObject('request object must carry nbf or iat');
  }
  if (payload.exp - start > MAX_REQUEST_OBJECT_LIFETIME) {
    throw new errors.InvalidRequestObject(`request object lifetime must be at most ${MAX_REQUEST_OBJECT_LIFETIME} s`);
  }
  if (typeof payload.jti !== 'string' || !payload.jti) {
    throw new errors.InvalidRequestObject('request object must carry jti');
  }
  if (payload.assertion_details !== undefined && payload.authorization_details !== undefined) {
    throw new errors.InvalidRequestObject('send either assertion_details or authorization_details, not both');
  }
  if (payload.request !== undefined || payload.request_uri !== undefined) {
    throw new errors.InvalidRequestObject('request object must not contain request or request_uri');
  }
}

// features.requestObjects hook: used for a `request` sent straight to the authorization endpoint
// (request objects at PAR are handled by pushedRequestObjects below, before oidc-provider sees them).
async function assertRequestObjectClaimsAndHeader(ctx, claims, header, client) {
  if ('PushedAuthorizationRequest' in ctx.oidc.entities) {
    return; // checked when it was pushed
  }
  assertRequestObjectRules(claims, header, client.clientId);
  if (claims.assertion_details !== undefined) {
    throw new errors.InvalidRequestObject('use authorization_details in request objects at the authorization endpoint');
  }
  assertFreshRequestObject(client.clientId, claims.jti);
  recordRequestObject({ clientId: client.clientId, jti: claims.jti, exp: claims.exp });
}

const JWT_ONLY_CLAIMS = new Set(['iss', 'aud', 'exp', 'nbf', 'iat', 'jti', 'sub']);

function asParameter(name, value) {
  if (Array.isArray(value)) {
    return value.map((item) => (typeof item === 'string' ? item : JSON.stringify(item)));
  }
  if (value !== null && typeof value === 'object') {
    return JSON.stringify(value);
  }
  return String(value);
}

// Verifies a pushed request object and merges it into the other PAR parameters (the request
// object's values win; client_id and response_type must agree). Returns the plain PAR form that
// oidc-provider then processes (organisation details end up in `authorization_details`) and the
// request object's identity, to be recorded once the PAR succeeds.
async function mergeRequestObject(form, issuer) {
  if (form.authorization_details !== undefined || form.assertion_details !== undefined) {
    throw new errors.InvalidRequest('authorization_details must be sent inside a signed request object');
  }
  if (form.request === undefined) {
    return { form, used: undefined };
  }
  if (Array.isArray(form.request)) {
    throw new errors.InvalidRequest('request must be sent once');
  }
  if (form.request_uri !== undefined) {
    throw new errors.InvalidRequest('request and request_uri parameters must not be used together');
  }

  let header;
  let unverified;
  try {
    header = decodeProtectedHeader(form.request);
    unverified = decodeJwt(form.request);
  } catch (cause) {
    throw new errors.InvalidRequestObject('could not parse the request object', { cause });
  }
  const clientId = unverified.iss;
  const client = typeof clientId === 'string' ? clientsById.get(clientId) : undefined;
  if (!client) {
    throw new errors.InvalidRequestObject('request object iss must be the client_id of a registered client');
  }
  if (form.client_id !== undefined && form.client_id !== clientId) {
    throw new errors.InvalidRequestObject('request object iss must equal the client_id parameter');
  }
  if (typeof form.client_assertion === 'string') {
    let assertionIssuer;
    try {
      assertionIssuer = decodeJwt(form.client_assertion).iss;
    } catch {
      assertionIssuer = undefined; // client authentication reports the broken assertion
    }
    if (assertionIssuer !== undefined && assertionIssuer !== clientId) {
      throw new errors.InvalidRequestObject('request object and client assertion name different clients');
    }
  }

  let payload;
  try {
    ({ payload } = await jwtVerify(form.request, createLocalJWKSet(client.jwks), {
      issuer: clientId,
      audience: issuer,
      algorithms: APPROVED_ALGS,
      clockTolerance: CLOCK_TOLERANCE,
      requiredClaims: ['exp'],
    }));
  } catch (cause) {
    throw new errors.InvalidRequestObject(`could not validate the request object: ${cause.code ?? cause.message}`, { cause });
  }
  assertRequestObjectRules(payload, header, clientId);
  assertFreshRequestObject(clientId, payload.jti);

  const merged = { ...form };
  delete merged.request;
  for (const [name, value] of Object.entries(payload)) {
    if (JWT_ONLY_CLAIMS.has(name) || value === undefined || value === null) {
      continue;
    }
    if (name === 'assertion_details' || name === 'authorization_details') {
      merged.authorization_details = JSON.stringify(Array.isArray(value) ? value : [value]);
      continue;
    }
    const parameter = asParameter(name, value);
    if (['client_id', 'response_type'].includes(name) && merged[name] !== undefined && merged[name] !== parameter) {
      throw new errors.InvalidRequestObject(`request object ${name} must equal the ${name} parameter`);
    }
    merged[name] = parameter;
  }
  return { form: merged, used: { clientId, jti: payload.jti, exp: payload.exp } };
}

const MAX_FORM_BYTES = 56 * 1024;

async function readForm(req) {
  const chunks = [];
  let received = 0;
  for await (const chunk of req) {
    received += chunk.length;
    if (received > MAX_FORM_BYTES) {
      throw new errors.InvalidRequest('request entity too large');
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

// HelseID issues a refresh token for offline_access alone. oidc-provider (following OpenID Connect
// Core) drops offline_access unless the request has prompt=consent, so add that prompt here; the
// development consent page is shown on every new login anyway.
function withConsentForOfflineAccess(params) {
  const scopes = typeof params.scope === 'string' ? params.scope.split(' ') : [];
  if (!scopes.includes('offline_access')) {
    return params;
  }
  const prompts = new Set(typeof params.prompt === 'string' ? params.prompt.split(' ').filter(Boolean) : []);
  if (prompts.has('none')) {
    return params;
  }
  prompts.add('consent');
  return { ...params, prompt: [...prompts].join(' ') };
}

function sendError(ctx, err, event) {
  ctx.set('cache-control', 'no-store');
  ctx.status = err.statusCode ?? 400;
  ctx.body = { error: err.error, error_description: err.error_description };
  log(`${event} ${err.error}: ${err.error_description}${err.error_detail ? ` [${err.error_detail}]` : ''}`);
}

// Koa middleware in front of oidc-provider: HelseID-style request objects at PAR (see the top) and
// offline_access without prompt=consent. Unsigned organisation details at the authorization
// endpoint are refused too.
function pushedRequestObjects(issuer) {
  return async (ctx, next) => {
    if (ctx.path === ROUTES.authorization && ctx.method === 'GET') {
      if (ctx.query.authorization_details !== undefined) {
        sendError(ctx, new errors.InvalidRequest('authorization_details must be sent inside a signed request object'), 'authorization.error');
        return;
      }
      if (ctx.query.request === undefined && ctx.query.request_uri === undefined) {
        ctx.query = withConsentForOfflineAccess(ctx.query);
      }
      await next();
      return;
    }
    if (ctx.path !== ROUTES.pushed_authorization_request || ctx.method !== 'POST'
        || !ctx.is('application/x-www-form-urlencoded')) {
      await next();
      return;
    }
    let used;
    try {
      const merged = await mergeRequestObject(querystring.parse(await readForm(ctx.req)), issuer);
      used = merged.used;
      // oidc-provider reads an already consumed body from req.body.
      ctx.req.body = querystring.stringify(withConsentForOfflineAccess(merged.form));
    } catch (err) {
      if (!(err instanceof errors.OIDCProviderError)) {
        throw err;
      }
      sendError(ctx, err, 'pushed_authorization_request.error');
      return;
    }
    await next();
    if (used && ctx.status === 201) {
      recordRequestObject(used);
    }
  };
}

// Rich Authorization Requests carry the request object's authorization_details from PAR to the
// code and the refresh tokens. They never show up in tokens or responses (HelseID maps them to
// claims); at the token endpoint organisations come from the client assertion only.
function validateDetail(ctx, detail, client) {
  if (ctx.oidc.route === 'token') {
    throw new errors.InvalidRequest(
      'organisations go in the client assertion (assertion_details), not in an authorization_details parameter',
    );
  }
  const entry = clientsById.get(client.clientId);
  if (!entry) {
    throw new errors.InvalidRequest('unknown client');
  }
  claimsFromDetails([detail], entry);
}

const richAuthorizationRequests = {
  enabled: true,
  types: {
    [HELSEID_AUTHORIZATION]: { validate: validateDetail },
    [JOURNAL_ID_TYPE]: { validate: validateDetail },
  },
  authorizationDetailsForGrantSource(ctx) {
    const { authorization_details: details } = ctx.oidc.params;
    return details === undefined ? undefined : JSON.parse(details);
  },
  authorizationDetailsForAccessToken() {
    return undefined;
  },
  authorizationDetailsForIntrospection() {
    return undefined;
  },
};

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

// ---- token exchange (RFC 8693) -------------------------------------------------------------------

let providerKeySet; // the provider's public signing keys, set in main()

const COPIED_USER_CLAIMS = new Set(['name', 'given_name', 'middle_name', 'family_name']);

function isCopiedSubjectClaim(name) {
  return COPIED_USER_CLAIMS.has(name)
    || name.startsWith('helseid://claims/identity/')
    || name.startsWith('helseid://claims/hpr/');
}

async function verifySubjectToken(token, issuer) {
  try {
    const { payload } = await jwtVerify(token, providerKeySet, {
      issuer,
      typ: 'at+jwt',
      algorithms: ['RS256'],
      clockTolerance: CLOCK_TOLERANCE,
    });
    return payload;
  } catch (cause) {
    throw new errors.InvalidGrant({ detail: `subject_token is not a valid access token of this issuer (${cause.code ?? cause.message})` });
  }
}

// The exchanged token: the subject's `sub`, identity claims and organisation context, issued to the
// actor (the authenticated client; `client_id`), bound to the actor's DPoP key, for one resource of
// the actor (`resource`, else `audience`, else the resource of the requested scopes), with
// act = {iss, client_id, orgnr_parent} of the actor (nesting a prior `act`).
// Organisation details in the actor's client assertion replace the subject's organisation claims.
async function tokenExchangeHandler(ctx) {
  const { provider, client, params } = ctx.oidc;
  const actor = clientsById.get(client.clientId);

  for (const name of ['subject_token', 'subject_token_type']) {
    if (!params[name]) {
      throw new errors.InvalidRequest(`missing required parameter '${name}'`);
    }
  }
  if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest(`subject_token_type must be ${ACCESS_TOKEN_TYPE}`);
  }
  if (params.requested_token_type !== undefined && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest(`requested_token_type must be ${ACCESS_TOKEN_TYPE}`);
  }
  if (params.actor_token !== undefined || params.actor_token_type !== undefined) {
    throw new errors.InvalidRequest('actor_token is not supported: the authenticated client is the actor');
  }

  const dPoP = await grantHelpers.validateDpop(provider, ctx);
  grantHelpers.checkDpopRequired(provider, ctx, dPoP);

  const subject = await verifySubjectToken(params.subject_token, provider.issuer);

  if (Array.isArray(params.resource)) {
    throw new errors.InvalidTarget('only one resource may be requested');
  }
  const resource = params.resource ?? params.audience ?? await defaultResource(ctx, client);
  if (!resource) {
    throw new errors.InvalidTarget('send resource, or scopes of exactly one of the client\'s resources');
  }
  const info = validateResourceServer(await getResourceServerInfo(ctx, resource, client));
  const allowed = info.scope.split(' ');
  const requested = requestedScopes(ctx);
  const unknown = requested.filter((scope) => !allowed.includes(scope));
  if (unknown.length) {
    throw new errors.InvalidScope('requested scope is not allowed', unknown.join(' '));
  }

  let orgClaims = Object.fromEntries(ORG_CLAIMS.filter((name) => name in subject).map((name) => [name, subject[name]]));
  const fromAssertion = detailsFromAssertion(ctx);
  let tenancyClaims = { [CLAIM.tenancy]: subject[CLAIM.tenancy] };
  if (fromAssertion !== undefined) {
    const { client_id: _id, client_amr: _amr, ...rest } = clientClaims(actor, claimsFromDetails(fromAssertion, actor));
    orgClaims = rest;
    tenancyClaims = {};
  }

  const isUserToken = typeof subject.sub === 'string' && subject.sub !== subject.client_id;
  const claims = {
    client_amr: 'private_key_jwt',
    ...tenancyClaims,
    ...Object.fromEntries(Object.entries(subject).filter(([name]) => isCopiedSubjectClaim(name))),
    ...orgClaims,
    act: {
      iss: provider.issuer,
      client_id: actor.client_id,
      [CLAIM.parent]: actor.organization_number,
      ...(subject.act ? { act: subject.act } : {}),
    },
  };

  await grantHelpers.checkDpopReplay(provider, ctx, dPoP, client.clientId, errors.InvalidGrant);

  const token = new provider.AccessToken({
    accountId: isUserToken ? subject.sub : undefined,
    client,
    gty: 'token_exchange',
  });
  token.resourceServer = new provider.ResourceServer(resource, info);
  token.scope = (requested.length ? requested : allowed).join(' ');
  if (dPoP) {
    token.setThumbprint('jkt', dPoP.thumbprint);
  }
  exchangedTokenClaims.set(token, claims);

  ctx.oidc.entity('AccessToken', token);
  const accessToken = await token.save();
  ctx.body = grantHelpers.buildTokenResponse(provider, {
    accessToken,
    expiresIn: token.expiration,
    issuedTokenType: ACCESS_TOKEN_TYPE,
    scope: token.scope,
    tokenType: token.tokenType,
  });
}

const TOKEN_EXCHANGE_PARAMETERS = [
  'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type',
  'scope', 'resource', 'audience',
];

// ---- users (devInteractions logs in any name) -----------------------------------------------------

const IDENTITY_SCOPES = {
  'helseid://scopes/identity/pid': ['helseid://claims/identity/pid'],
  'helseid://scopes/identity/pid_pseudonym': ['helseid://claims/identity/pid_pseudonym'],
  'helseid://scopes/identity/assurance_level': ['helseid://claims/identity/assurance_level'],
  'helseid://scopes/identity/security_level': ['helseid://claims/identity/security_level'],
  'helseid://scopes/identity/network': ['helseid://claims/identity/network'],
  'helseid://scopes/hpr/hpr_number': ['helseid://claims/hpr/hpr_number'],
  profile: ['name', 'given_name', 'middle_name', 'family_name'],
};

const STATIC_SCOPES = ['openid', 'offline_access', ...Object.keys(IDENTITY_SCOPES)];

// Named test users. 13116900216 is the test person of HelseID's own samples; the other numbers are
// synthetic (month + 80) and cannot belong to anyone.
const USERS = {
  kari: { given_name: 'Kari', family_name: 'Nordmann', pid: '13116900216', hpr_number: '565501872' },
  ola: { given_name: 'Ola', family_name: 'Nordmann', pid: syntheticPid('ola'), hpr_number: '565501873' },
};

// A synthetic Norwegian national identity number (month + 80, valid check digits) derived from seed.
function syntheticPid(seed) {
  const bytes = crypto.createHash('sha256').update(seed).digest();
  for (let i = 0; ; i += 1) {
    const b = (n) => bytes[(i + n) % bytes.length];
    const day = 1 + ((b(0) + i) % 28);
    const month = 81 + (b(1) % 12);
    const year = b(2) % 100;
    const individual = (b(3) * 256 + b(4) + i) % 1000;
    const digits = `${String(day).padStart(2, '0')}${month}${String(year).padStart(2, '0')}${String(individual).padStart(3, '0')}`
      .split('').map(Number);
    const check = (weights, values) => {
      const rest = 11 - (weights.reduce((sum, w, k) => sum + w * values[k], 0) % 11);
      return rest === 11 ? 0 : rest;
    };
    const k1 = check([3, 7, 6, 1, 8, 9, 4, 5, 2], digits);
    if (k1 === 10) continue;
    const k2 = check([5, 4, 3, 2, 7, 6, 5, 4, 3, 2], [...digits, k1]);
    if (k2 === 10) continue;
    return [...digits, k1, k2].join('');
  }
}

function userFor(login) {
  const known = USERS[login];
  if (known) {
    return known;
  }
  const pid = /^\d{11}$/.test(login) ? login : syntheticPid(login);
  const hpr = String(100000000 + (parseInt(crypto.hash('sha256', login, 'hex').slice(0, 8), 16) % 900000000));
  return { given_name: 'Test', family_name: login, pid, hpr_number: hpr };
}

async function findAccount(_ctx, accountId) {
  return {
    accountId,
    async claims() {
      const user = userFor(accountId);
      return {
        sub: accountId,
        name: `${user.given_name} ${user.family_name}`,
        given_name: user.given_name,
        family_name: user.family_name,
        'helseid://claims/identity/pid': user.pid,
        'helseid://claims/identity/pid_pseudonym': crypto.hash('sha256', user.pid, 'base64'),
        'helseid://claims/identity/assurance_level': 'high',
        'helseid://claims/identity/security_level': '4',
        'helseid://claims/identity/network': 'internett',
        'helseid://claims/hpr/hpr_number': user.hpr_number,
      };
    },
  };
}

// ---- provider ----------------------------------------------------------------------------------

function clientMetadata(client) {
  const redirectUris = client.redirect_uris ?? [];
  const interactive = redirectUris.length > 0;
  const grantTypes = client.grant_types ?? [
    'client_credentials',
    TOKEN_EXCHANGE,
    ...(interactive ? ['authorization_code', 'refresh_token'] : []),
  ];
  return {
    client_id: client.client_id,
    jwks: client.jwks,
    token_endpoint_auth_method: 'private_key_jwt',
    grant_types: grantTypes,
    response_types: grantTypes.includes('authorization_code') ? ['code'] : [],
    redirect_uris: redirectUris,
    dpop_bound_access_tokens: true,
    authorization_details_types: [HELSEID_AUTHORIZATION, JOURNAL_ID_TYPE],
    // Client metadata may only name the provider's own (OpenID/identity) scopes; API scopes are
    // governed per resource by getResourceServerInfo.
    scope: [...new Set([...(client.scopes ?? []), ...(interactive ? ['openid', 'offline_access'] : [])])]
      .filter((scope) => STATIC_SCOPES.includes(scope))
      .join(' ') || undefined,
  };
}

async function signingJwks() {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const meta = { alg: 'RS256', use: 'sig', kid: crypto.randomBytes(16).toString('hex') };
  return {
    signing: { keys: [{ ...await exportJWK(privateKey), ...meta }] },
    verifying: { keys: [{ ...await exportJWK(publicKey), ...meta }] },
  };
}

// Absolute refresh-token lifetime, counted from the login (iiat survives rotation).
function refreshTokenTTL(_ctx, token) {
  const age = token?.iiat ? epochTime() - token.iiat : 0;
  return Math.max(1, config.refreshTokenLifetime - age);
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

  const keys = await signingJwks();
  providerKeySet = createLocalJWKSet(keys.verifying);

  const provider = new Provider(issuer, {
    clients: config.clients.map(clientMetadata),
    jwks: keys.signing,
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    clientAuthMethods: ['private_key_jwt'],
    enabledJWA: {
      clientAuthSigningAlgValues: APPROVED_ALGS,
      dPoPSigningAlgValues: APPROVED_ALGS,
      requestObjectSigningAlgValues: APPROVED_ALGS,
      idTokenSigningAlgValues: ['RS256'],
    },
    assertJwtClientAuthClaimsAndHeader,
    clockTolerance: CLOCK_TOLERANCE,
    conformIdTokenClaims: false, // identity claims of the granted scopes go into the ID token too
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
      requestObjects: {
        enabled: true,
        requireSignedRequestObject: false,
        assertJwtClaimsAndHeader: assertRequestObjectClaimsAndHeader,
      },
      richAuthorizationRequests,
      // Any authenticated client may introspect (APIs do); only a token's own client may revoke it.
      introspection: { enabled: true, allowedPolicy: async () => true },
      revocation: {
        enabled: true,
        async allowedPolicy(_ctx, client, token) {
          if (token.clientId !== client.clientId) {
            throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
          }
          return true;
        },
      },
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
      Session: config.refreshTokenLifetime,
      Grant: config.refreshTokenLifetime,
      RefreshToken: refreshTokenTTL,
    },
    routes: ROUTES,
  });

  provider.registerGrantType(TOKEN_EXCHANGE, tokenExchangeHandler, TOKEN_EXCHANGE_PARAMETERS);

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
    const isToken = ctx.path === ROUTES.token && ctx.method === 'POST';
    if (isToken) {
      stats.token_requests += 1;
    }
    await next();
    if (isToken && ctx.status === 400 && ctx.body?.error === 'use_dpop_nonce') {
      stats.nonce_challenges += 1;
    }
    // HelseID reports the refresh token's lifetime in its own member.
    if (isToken && ctx.status === 200 && ctx.body?.refresh_token) {
      const refreshToken = ctx.oidc?.entities?.RefreshToken;
      if (refreshToken) {
        ctx.body = { ...ctx.body, rt_expires_in: refreshToken.expiration };
      }
    }
  });
  provider.use(pushedRequestObjects(issuer));

  for (const event of ['grant.error', 'pushed_authorization_request.error', 'authorization.error',
    'revocation.error', 'introspection.error', 'server_error']) {
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
