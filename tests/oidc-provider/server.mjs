// panva's oidc-provider as a real, independent OpenID Provider for the interop tests.
//
// Started by tests/support/oidc_provider.rs; can also be run by hand:
//
//   cd tests/oidc-provider && npm ci
//   REDIRECT_URIS=http://127.0.0.1:3000/auth/callback node server.mjs
//
// Configured entirely from the environment:
//   PORT                       port to listen on; 0 (the default) picks a free one
//   HOST                       address to listen on (default 127.0.0.1)
//   ISSUER                     issuer identifier (default http://HOST:PORT, with the real port)
//   REDIRECT_URIS              comma-separated; registered for every client (required)
//   POST_LOGOUT_REDIRECT_URIS  comma-separated; registered for every client (optional)
//   ACCESS_TOKEN_TTL           access token lifetime in seconds (default 3600)
//   EXIT_ON_STDIN_CLOSE        when "1", exit as soon as stdin reaches EOF: the test harness keeps a
//                              pipe open, so the provider dies with the test process even if that
//                              process is killed before it can stop the provider
//
// Prints exactly one line `READY <issuer>` on stdout once it is listening; everything else
// (oidc-provider's own notices aside) goes to stderr. Exits with status 0 on SIGTERM / SIGINT.
//
// Clients (all: grant_types authorization_code + refresh_token, response_types code):
//   rp-confidential  secret rp-confidential-secret  client_secret_basic
//   rp-post          secret rp-post-secret          client_secret_post
//   rp-public        no secret                      none (public client)
//
// Users: devInteractions' login form accepts any login name with any non-empty password.
// The account's `sub` is the login name, `name` the login name capitalised,
// `preferred_username` the login name, `email` `<login>@example.com`.
// Consent is granted automatically (loadExistingGrant below); the login form always shows
// for a new provider session.

import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

function fail(message) {
  process.stderr.write(`oidc-provider test server: ${message}\n`);
  process.exit(2);
}

function list(name) {
  return (process.env[name] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

function positiveInt(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) fail(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return value;
}

const HOST = process.env.HOST || '127.0.0.1';
const PORT = process.env.PORT === undefined || process.env.PORT === '' ? 0 : Number(process.env.PORT);
if (!Number.isInteger(PORT) || PORT < 0 || PORT > 65535) fail(`PORT must be 0..65535, got ${JSON.stringify(process.env.PORT)}`);
const REDIRECT_URIS = list('REDIRECT_URIS');
if (REDIRECT_URIS.length === 0) fail('REDIRECT_URIS must name at least one redirect URI');
const POST_LOGOUT_REDIRECT_URIS = list('POST_LOGOUT_REDIRECT_URIS');
const ACCESS_TOKEN_TTL = positiveInt('ACCESS_TOKEN_TTL', 3600);

// Listen first so that PORT=0 works: the issuer has to contain the real port, and the
// provider can only be built once the issuer is known.
const server = createServer();
server.on('error', (err) => fail(`cannot listen on ${HOST}:${PORT}: ${err.message}`));
await new Promise((resolve) => server.listen(PORT, HOST, resolve));
const { port } = server.address();
const hostInUrl = HOST.includes(':') ? `[${HOST}]` : HOST;
const ISSUER = process.env.ISSUER || `http://${hostInUrl}:${port}`;

// A fresh signing key per process (instead of oidc-provider's built-in development keystore).
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };

const clientCommon = {
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  redirect_uris: REDIRECT_URIS,
  ...(POST_LOGOUT_REDIRECT_URIS.length ? { post_logout_redirect_uris: POST_LOGOUT_REDIRECT_URIS } : {}),
};

function capitalise(s) {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

const configuration = {
  clients: [
    {
      ...clientCommon,
      client_id: 'rp-confidential',
      client_secret: 'rp-confidential-secret',
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      ...clientCommon,
      client_id: 'rp-post',
      client_secret: 'rp-post-secret',
      token_endpoint_auth_method: 'client_secret_post',
    },
    {
      ...clientCommon,
      client_id: 'rp-public',
      token_endpoint_auth_method: 'none',
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: {
    keys: [randomBytes(32).toString('hex')],
    // The defaults use SameSite=None for the session cookie, which browsers drop without
    // Secure, i.e. over plain http. Lax works for top-level navigations on http loopback.
    long: { httpOnly: true, sameSite: 'lax', signed: true },
    short: { httpOnly: true, sameSite: 'lax', signed: true },
  },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
  },
  scopes: ['openid', 'offline_access', 'profile', 'email'],
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          name: capitalise(sub),
          preferred_username: sub,
          email: `${sub}@example.com`,
          email_verified: true,
        };
      },
    };
  },
  // Consent is granted automatically: every scope / claim the request asks for is added to the
  // (existing or new) grant, so the only interaction a user ever sees is the login form.
  async loadExistingGrant(ctx) {
    const { oidc } = ctx;
    const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
    let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
    if (!grant) {
      grant = new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
    }
    const scopes = [...oidc.requestParamOIDCScopes];
    if (scopes.length) grant.addOIDCScope(scopes.join(' '));
    const claims = [...oidc.requestParamClaims];
    if (claims.length) grant.addOIDCClaims(claims);
    await grant.save();
    return grant;
  },
  responseTypes: ['code'],
  pkce: {
    methods: ['S256'],
    required: () => true,
  },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  clockTolerance: 0,
  features: {
    devInteractions: { enabled: true },
    userinfo: { enabled: true },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  ttl: {
    AccessToken: ACCESS_TOKEN_TTL,
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: 14 * 24 * 60 * 60,
    Interaction: 3600,
    Session: 14 * 24 * 60 * 60,
    Grant: 14 * 24 * 60 * 60,
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    const escape = (v) => String(v).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
    ctx.body = `<!DOCTYPE html><html><head><title>oidc-provider error</title></head><body><h1>oidc-provider error</h1>${
      Object.entries(out).map(([k, v]) => `<pre><strong>${escape(k)}</strong>: ${escape(v)}</pre>`).join('')
    }</body></html>`;
  },
};

let provider;
try {
  provider = new Provider(ISSUER, configuration);
} catch (err) {
  fail(`invalid configuration: ${err.stack || err}`);
}

// Log every error the provider reports, with the detail it keeps out of its HTTP responses.
const errorEvents = [
  'server_error',
  'authorization.error',
  'backchannel.error',
  'jwks.error',
  'discovery.error',
  'end_session.error',
  'grant.error',
  'introspection.error',
  'revocation.error',
  'userinfo.error',
];
for (const event of errorEvents) {
  provider.on(event, (ctx, err) => {
    const detail = err?.error_detail ? ` (${err.error_detail})` : '';
    const where = ctx?.method ? ` ${ctx.method} ${ctx.path}` : '';
    const what = event === 'server_error' ? (err?.stack || err) : `${err?.error || err?.name}: ${err?.error_description || err?.message}${detail}`;
    process.stderr.write(`oidc-provider ${event}${where}: ${what}\n`);
  });
}

// Token endpoint grants, revoked tokens and RP-initiated logouts, for the tests to observe.
provider.on('grant.success', (ctx) => {
  process.stderr.write(`EVENT grant.success ${ctx?.oidc?.params?.grant_type}\n`);
});
for (const event of ['refresh_token.destroyed', 'access_token.destroyed', 'grant.revoked']) {
  provider.on(event, () => process.stderr.write(`EVENT ${event}\n`));
}
provider.on('end_session.success', () => {
  process.stderr.write('EVENT end_session.success\n');
});

// Static clients are only validated when first used; validate them now so that a bad
// REDIRECT_URIS fails the start instead of showing up as an error page in some test.
for (const { client_id: id } of configuration.clients) {
  try {
    // eslint-disable-next-line no-await-in-loop
    if (!await provider.Client.find(id)) fail(`client ${id} not found`);
  } catch (err) {
    fail(`invalid client ${id}: ${err.error_description || err.message}`);
  }
}

server.on('request', provider.callback());

let stopping = false;
function stop(signal) {
  if (stopping) return;
  stopping = true;
  process.stderr.write(`oidc-provider test server: ${signal}, shutting down\n`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  // Should close() hang on a half-open connection, do not hang with it.
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
if (process.env.EXIT_ON_STDIN_CLOSE === '1') {
  process.stdin.on('end', () => stop('stdin closed'));
  process.stdin.on('error', () => stop('stdin error'));
  process.stdin.resume();
}

process.stdout.write(`READY ${ISSUER}\n`);
