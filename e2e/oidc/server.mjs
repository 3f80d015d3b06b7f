// Minimal OpenID provider for tokenvendor end-to-end tests and the demo.
// Built on oidc-provider (OpenID-certified). Issues JWT access tokens via the
// client_credentials grant. Must live next to a node_modules that contains
// oidc-provider (see e2e/oidc/README.md).
//
// Env: PORT (required), ISSUER, AUDIENCE, CLIENTS (JSON), TOKEN_TTL, ALG;
//      MTLS_PORT with MTLS_CERT, MTLS_KEY and MTLS_CLIENT_CA (PEM files): a
//      second, HTTPS listener that requires a client certificate signed by
//      MTLS_CLIENT_CA, where clients marked "bound": true get access tokens
//      bound to that certificate (RFC 8705, cnf x5t#S256).
// Signals: SIGUSR1 = add a new signing key (old public keys stay published),
//          SIGUSR2 = retire every key except the current signing key,
//          SIGTERM/SIGINT = exit.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

// Silence oidc-provider warnings that are expected for this test-only setup
// (Node 20 runtime notice, in-memory adapter on every (re)build, the
// pre-parsed body used by rewriteResourceParam). Everything else still goes
// to stderr. Installed before oidc-provider is loaded, hence the dynamic import.
{
  const EXPECTED = [
    'Unsupported runtime',
    'development-only in-memory adapter',
    'already parsed request body detected',
  ];
  const origWarn = console.warn;
  console.warn = (...args) => {
    if (typeof args[0] === 'string' && EXPECTED.some((m) => args[0].includes(m))) return;
    origWarn(...args);
  };
}

const { default: Provider, errors } = await import('oidc-provider');

function fail(msg) {
  process.stderr.write(`oidc: ${msg}\n`);
  process.exit(2);
}

// ---------------------------------------------------------------- config --

const PORT = Number.parseInt(process.env.PORT ?? '', 10);
if (!Number.isInteger(PORT) || PORT <= 0 || PORT > 65535) fail('PORT must be set to a valid port');

const ISSUER = process.env.ISSUER || `http://127.0.0.1:${PORT}`;
const AUDIENCE = process.env.AUDIENCE || 'tokenvendor';

const TOKEN_TTL = process.env.TOKEN_TTL ? Number(process.env.TOKEN_TTL) : 3600;
if (!Number.isSafeInteger(TOKEN_TTL) || TOKEN_TTL <= 0) fail('TOKEN_TTL must be a positive integer (seconds)');

const ALGS = {
  RS256: { type: 'rsa', options: { modulusLength: 2048 } },
  PS256: { type: 'rsa', options: { modulusLength: 2048 } },
  ES256: { type: 'ec', options: { namedCurve: 'P-256' } },
  EdDSA: { type: 'ed25519', options: {} },
};
const ALG = process.env.ALG || 'RS256';
if (!ALGS[ALG]) fail(`ALG must be one of ${Object.keys(ALGS).join(', ')}`);

// Resource indicators must be absolute URIs in oidc-provider. If AUDIENCE is
// not one (e.g. the default "tokenvendor"), an internal URN is used as the
// resource identifier and a request parameter resource=<AUDIENCE> is mapped
// to it. The token's aud claim is always exactly AUDIENCE.
const isAbsoluteUri = (s) => {
  const u = URL.parse(s);
  return !!u && !u.href.includes('#');
};
const RESOURCE_ID = isAbsoluteUri(AUDIENCE)
  ? AUDIENCE
  : `urn:tokenvendor-e2e:resource:${encodeURIComponent(AUDIENCE)}`;
const REWRITE_RESOURCE = RESOURCE_ID !== AUDIENCE;

let clientsInput;
try {
  clientsInput = JSON.parse(process.env.CLIENTS || '[]');
} catch {
  fail('CLIENTS must be a JSON array');
}
if (!Array.isArray(clientsInput) || clientsInput.length === 0) fail('CLIENTS must be a non-empty JSON array');

// client_id -> { scopes: string, hasTenant: bool, tenant: any }
const CLIENT_INFO = new Map();
const CLIENT_METADATA = clientsInput.map((c, i) => {
  if (!c || typeof c !== 'object' || Array.isArray(c)) fail(`CLIENTS[${i}] must be an object`);
  const { client_id: id, client_secret: secret } = c;
  if (typeof id !== 'string' || !id) fail(`CLIENTS[${i}].client_id must be a non-empty string`);
  if (typeof secret !== 'string' || !secret) fail(`CLIENTS[${i}].client_secret must be a non-empty string`);
  if (CLIENT_INFO.has(id)) fail(`CLIENTS[${i}].client_id is duplicated`);
  if (c.scope !== undefined && typeof c.scope !== 'string') fail(`CLIENTS[${i}].scope must be a string`);
  if (c.bound !== undefined && typeof c.bound !== 'boolean') fail(`CLIENTS[${i}].bound must be a boolean`);
  const scopes = (c.scope || '').split(' ').filter(Boolean).join(' ');
  CLIENT_INFO.set(id, {
    scopes,
    hasTenant: Object.hasOwn(c, 'tenant_id'),
    tenant: c.tenant_id,
  });
  return {
    client_id: id,
    client_secret: secret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    // client_secret_post is accepted too: oidc-provider treats the two secret
    // methods as interchangeable at the token endpoint.
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: ALG,
    ...(c.bound ? { tls_client_certificate_bound_access_tokens: true } : {}),
  };
});

const MTLS_PORT = process.env.MTLS_PORT ? Number.parseInt(process.env.MTLS_PORT, 10) : 0;
if (process.env.MTLS_PORT && (!Number.isInteger(MTLS_PORT) || MTLS_PORT <= 0 || MTLS_PORT > 65535)) fail('MTLS_PORT must be a valid port');
if (MTLS_PORT && !(process.env.MTLS_CERT && process.env.MTLS_KEY && process.env.MTLS_CLIENT_CA)) {
  fail('MTLS_PORT needs MTLS_CERT, MTLS_KEY and MTLS_CLIENT_CA');
}

// ------------------------------------------------------------------ keys --

// RFC 7638 JWK thumbprint, used as kid.
function thumbprint(jwk) {
  let members;
  switch (jwk.kty) {
    case 'RSA': members = { e: jwk.e, kty: jwk.kty, n: jwk.n }; break;
    case 'EC': members = { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }; break;
    case 'OKP': members = { crv: jwk.crv, kty: jwk.kty, x: jwk.x }; break;
    default: throw new Error(`unsupported kty ${jwk.kty}`);
  }
  return crypto.createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

function generateKey() {
  const { type, options } = ALGS[ALG];
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: thumbprint(jwk), use: 'sig', alg: ALG };
}

// keys[0] is the current signing key; the rest are published for verification only.
let keys = [generateKey()];

// -------------------------------------------------------------- provider --

const cookieKeys = [crypto.randomBytes(32).toString('base64url')];

function buildProvider() {
  const provider = new Provider(ISSUER, {
    clients: structuredClone(CLIENT_METADATA),
    // Deep copy: the provider mutates/holds on to what it is given.
    jwks: { keys: structuredClone(keys) },
    cookies: { keys: cookieKeys },
    clientDefaults: {
      grant_types: ['client_credentials'],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: false },
      userinfo: { enabled: false },
      // Certificate-bound access tokens: the client certificate is the one
      // the mTLS listener verified (none on the plain listener).
      mTLS: {
        enabled: !!MTLS_PORT,
        certificateBoundAccessTokens: !!MTLS_PORT,
        getCertificate: (ctx) => {
          const peer = ctx.socket?.getPeerCertificate?.();
          return peer?.raw ? new crypto.X509Certificate(peer.raw) : undefined;
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => RESOURCE_ID,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource, client) => {
          if (resource !== RESOURCE_ID) throw new errors.InvalidTarget();
          return {
            // Only the scopes configured for this client can end up in its token;
            // other requested scopes are dropped (standard oidc-provider behaviour).
            scope: CLIENT_INFO.get(client.clientId)?.scopes ?? '',
            audience: AUDIENCE,
            accessTokenFormat: 'jwt',
            accessTokenTTL: TOKEN_TTL,
            jwt: { sign: { alg: ALG } },
          };
        },
      },
    },
    extraTokenClaims: async (_ctx, token) => {
      if (token.kind !== 'ClientCredentials') return undefined;
      const info = CLIENT_INFO.get(token.clientId);
      if (!info?.hasTenant) return undefined;
      return { tenant_id: info.tenant };
    },
    ttl: {
      ClientCredentials: TOKEN_TTL,
      AccessToken: TOKEN_TTL,
    },
    // Never leak internals (or anything request-derived) in error pages.
    renderError: async (ctx, out) => {
      ctx.type = 'application/json';
      ctx.body = out;
    },
  });

  if (REWRITE_RESOURCE) {
    provider.use(rewriteResourceParam);
  }
  return provider;
}

// Maps resource=<AUDIENCE> to the internal resource URI on POST /token. The
// body is read here and handed to oidc-provider via req.body (its documented
// fallback for pre-parsed bodies).
async function rewriteResourceParam(ctx, next) {
  if (ctx.method === 'POST' && ctx.path === '/token' && ctx.is('application/x-www-form-urlencoded')) {
    const chunks = [];
    let size = 0;
    for await (const chunk of ctx.req) {
      size += chunk.length;
      if (size > 56 * 1024) {
        ctx.status = 413;
        ctx.body = { error: 'invalid_request', error_description: 'request entity too large' };
        return undefined;
      }
      chunks.push(chunk);
    }
    const raw = Buffer.concat(chunks).toString('utf8');
    const decode = (s) => {
      try { return decodeURIComponent(s.replace(/\+/g, ' ')); } catch { return s; }
    };
    ctx.req.body = raw.split('&').map((pair) => {
      const eq = pair.indexOf('=');
      if (eq === -1) return pair;
      if (decode(pair.slice(0, eq)) !== 'resource' || decode(pair.slice(eq + 1)) !== AUDIENCE) return pair;
      return `resource=${encodeURIComponent(RESOURCE_ID)}`;
    }).join('&');
  }
  return next();
}

let provider = buildProvider();
let handler = provider.callback();

function swapProvider() {
  const next = buildProvider();
  provider = next;
  handler = next.callback();
}

// ---------------------------------------------------------------- server --

const server = http.createServer((req, res) => handler(req, res));
let mtlsServer; // the mTLS listener, with MTLS_PORT
server.keepAliveTimeout = 1000;

const published = () => keys.map((k) => k.kid).join(',');

process.on('SIGUSR1', () => {
  try {
    const key = generateKey();
    keys = [key, ...keys];
    swapProvider();
    process.stdout.write(`rotated: signing kid=${key.kid} published=${published()}\n`);
  } catch (err) {
    process.stderr.write(`oidc: rotation failed: ${err.message}\n`);
  }
});

process.on('SIGUSR2', () => {
  try {
    keys = [keys[0]];
    swapProvider();
    process.stdout.write(`retired: signing kid=${keys[0].kid} published=${published()}\n`);
  } catch (err) {
    process.stderr.write(`oidc: retire failed: ${err.message}\n`);
  }
});

let stopping = false;
function shutdown() {
  if (stopping) return;
  stopping = true;
  mtlsServer?.close();
  mtlsServer?.closeAllConnections?.();
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

server.on('error', (err) => fail(`listen failed: ${err.message}`));
let listening = MTLS_PORT ? 2 : 1;
const ready = () => {
  listening -= 1;
  if (listening === 0) process.stdout.write('ready\n');
};
server.listen(PORT, '127.0.0.1', ready);
if (MTLS_PORT) {
  mtlsServer = https.createServer({
    cert: fs.readFileSync(process.env.MTLS_CERT),
    key: fs.readFileSync(process.env.MTLS_KEY),
    ca: fs.readFileSync(process.env.MTLS_CLIENT_CA),
    requestCert: true,
    rejectUnauthorized: true,
  }, (req, res) => handler(req, res));
  mtlsServer.keepAliveTimeout = 1000;
  mtlsServer.on('error', (err) => fail(`mTLS listen failed: ${err.message}`));
  mtlsServer.listen(MTLS_PORT, '127.0.0.1', ready);
}
