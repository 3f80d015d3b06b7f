// The AWS SDK for JavaScript v3, unmodified, as an application uses it
// (e2e/sdkmatrix_test.go). scripts/tools.sh installs the pinned packages
// into .tools/jssdk; this file stays in the repository and loads them from
// there.
//
//   node s3.mjs DIR PROVIDER credentials
//   node s3.mjs DIR PROVIDER s3 ENDPOINT BUCKET OWN_KEY OTHER_KEY
//
// DIR holds node_modules/@aws-sdk/client-s3. PROVIDER is "default" (the
// client's default chain, fromNodeProviderChain: for the container
// endpoint fromHttp, then fromContainerMetadata) or "container-metadata"
// (fromContainerMetadata of @aws-sdk/credential-providers). Credentials
// come from the environment alone, as the SDK reads it.
//
// "credentials" resolves the credentials and nothing else; "s3" then
// writes OWN_KEY, reads it back, reads OTHER_KEY and writes OTHER_KEY.
// The answer is one JSON line on stdout (e2e/sdkmatrix_test.go's
// sdkResult): the packages' versions, the credentials' source, the error
// that kept the SDK from credentials, and each S3 call's error code. No
// credential is printed.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';

const [toolsDir, provider, mode, endpoint, bucket, own, other] = process.argv.slice(2);
if (!toolsDir || !['default', 'container-metadata'].includes(provider) || !['credentials', 's3'].includes(mode)) {
  fail('usage: node s3.mjs DIR default|container-metadata credentials|s3 [ENDPOINT BUCKET OWN_KEY OTHER_KEY]');
}
if (mode === 's3' && !other) {
  fail('s3 needs ENDPOINT BUCKET OWN_KEY OTHER_KEY');
}
const dir = resolve(toolsDir);
const require = createRequire(join(dir, 'package.json'));
const version = (name) => {
  try {
    return JSON.parse(readFileSync(require.resolve(`${name}/package.json`), 'utf8')).version;
  } catch {
    // A package that does not export its package.json: find it on disk.
    return JSON.parse(readFileSync(join(dir, 'node_modules', name, 'package.json'), 'utf8')).version;
  }
};

const out = { versions: {}, source: '', error: '', trace: [], ops: [] };
for (const name of [
  '@aws-sdk/client-s3',
  '@aws-sdk/credential-providers',
  '@aws-sdk/credential-provider-node',
  '@aws-sdk/credential-provider-http',
  '@smithy/credential-provider-imds'
]) {
  out.versions[name] = version(name);
}

const { S3Client, PutObjectCommand, GetObjectCommand } = require('@aws-sdk/client-s3');
const { fromContainerMetadata } = require('@aws-sdk/credential-providers');

// The providers say at debug level why they passed on to the next link
// (the default chain's own error only says that none gave credentials).
const logger = {
  trace() {},
  debug: (...args) => {
    const line = args.map(String).join(' ');
    if (line.includes('->') || line.includes('(!)')) {
      out.trace.push(line);
    }
  },
  info() {},
  warn() {},
  error() {}
};
const options = { region: 'us-east-1', forcePathStyle: true, logger };
if (endpoint) {
  options.endpoint = endpoint;
}
if (provider === 'container-metadata') {
  options.credentials = fromContainerMetadata({ logger });
}
const client = new S3Client(options);

try {
  const credentials = await client.config.credentials();
  // $source names the SDK features that made the credentials, e.g.
  // CREDENTIALS_HTTP or CREDENTIALS_PROCESS; fromContainerMetadata sets none.
  out.source = Object.keys(credentials.$source ?? {}).sort().join(',') || provider;
} catch (err) {
  out.error = `${err.name}: ${err.message}`;
  finish();
}

if (mode === 's3') {
  const body = `written by the JavaScript SDK v3 (${provider})`;
  await call('put', own, () => client.send(new PutObjectCommand({ Bucket: bucket, Key: own, Body: body })));
  await call('get', own, async () => {
    const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: own }));
    if ((await res.Body.transformToString()) !== body) {
      throw Object.assign(new Error('read back other content'), { name: 'Mismatch' });
    }
  });
  await call('get', other, async () => {
    const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: other }));
    await res.Body.transformToString();
  });
  await call('put', other, () => client.send(new PutObjectCommand({ Bucket: bucket, Key: other, Body: 'overwritten' })));
}
finish();

async function call(op, key, fn) {
  try {
    await fn();
    out.ops.push({ op, key, code: '' });
  } catch (err) {
    out.ops.push({ op, key, code: err.Code ?? err.name ?? 'Error', message: err.message });
  }
}

function finish() {
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(0);
}

function fail(message) {
  process.stderr.write(`s3.mjs: ${message}\n`);
  process.exit(2);
}
