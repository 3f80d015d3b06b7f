#!/usr/bin/env bash
# Smoke test for the e2e OpenID provider (e2e/oidc/server.mjs).
# Installs oidc-provider into .tools/oidc if needed, starts the server on a
# free port, fetches tokens, checks claims/signatures, exercises key rotation.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="$ROOT/.tools/oidc"
OIDC_VERSION="9.13.3"

die() { echo "FAIL: $*" >&2; exit 1; }

if [ ! -d "$TOOLS/node_modules/oidc-provider" ]; then
  echo "installing oidc-provider@$OIDC_VERSION into $TOOLS"
  npm install --no-audit --no-fund --prefix "$TOOLS" "oidc-provider@$OIDC_VERSION" >/dev/null
fi
cp "$ROOT/e2e/oidc/server.mjs" "$TOOLS/server.mjs"

PORT="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
BASE="http://127.0.0.1:$PORT"
LOG="$(mktemp)"
ERR="$(mktemp)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -f "$LOG" "$ERR"
}
trap cleanup EXIT

export PORT
export AUDIENCE="tokenvendor"
export CLIENTS='[{"client_id":"svc-acme","client_secret":"secret-acme-123","tenant_id":"acme","scope":"read"},{"client_id":"worker","client_secret":"secret-worker-1","scope":"tokenvendor:any-tenant"}]'
node "$TOOLS/server.mjs" >"$LOG" 2>"$ERR" &
SERVER_PID=$!

# wait_for_line PATTERN: wait until the server's stdout has a line matching PATTERN.
wait_for_line() {
  for _ in $(seq 1 100); do
    grep -qE "$1" "$LOG" && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$ERR" >&2; die "server exited"; }
    sleep 0.1
  done
  cat "$ERR" >&2
  die "timed out waiting for '$1'"
}
wait_for_line '^ready$'
echo "server ready on $BASE (pid $SERVER_PID)"

# jsget EXPR: evaluate a JS expression with `j` = JSON from stdin, print the result.
jsget() { node -e 'let d="";process.stdin.on("data",c=>d+=c).on("end",()=>{const j=JSON.parse(d);const v=('"$1"');process.stdout.write(typeof v==="string"?v:JSON.stringify(v))})'; }

# check_token TOKEN JWKS: verify the signature against JWKS, print header and payload.
check_token() {
  TOKEN="$1" JWKS="$2" node -e '
    const crypto = require("crypto");
    const [h, p, s] = process.env.TOKEN.split(".");
    const dec = (x) => JSON.parse(Buffer.from(x, "base64url").toString());
    const header = dec(h), payload = dec(p);
    const jwk = JSON.parse(process.env.JWKS).keys.find((k) => k.kid === header.kid);
    if (!jwk) { console.error("kid not in JWKS"); process.exit(1); }
    const key = crypto.createPublicKey({ key: jwk, format: "jwk" });
    const opts = header.alg.startsWith("ES") ? { key, dsaEncoding: "ieee-p1363" } : key;
    const ok = crypto.verify("sha256", Buffer.from(h + "." + p), opts, Buffer.from(s, "base64url"));
    if (!ok) { console.error("bad signature"); process.exit(1); }
    console.log("  header:  " + JSON.stringify(header));
    console.log("  payload: " + JSON.stringify(payload));
  '
}

# token CURL_ARGS...: POST /token, print the access token or fail.
token() {
  local resp
  resp="$(curl -sS -X POST "$BASE/token" "$@")" || die "token request failed"
  echo "$resp" | jsget 'j.access_token || ""' | grep . || die "no access_token: $resp"
}

# claim TOKEN PART(1=header,2=payload) NAME: print a claim ("<undefined>" if absent).
claim() { TOKEN="$1" node -e 'const t=process.env.TOKEN.split(".");const j=JSON.parse(Buffer.from(t['"$(($2-1))"'],"base64url"));const v=j.'"$3"';process.stdout.write(v===undefined?"<undefined>":typeof v==="string"?v:JSON.stringify(v))'; }

expect() { [ "$2" = "$3" ] || die "$1: expected '$3', got '$2'"; echo "  ok: $1 = $3"; }

curl -sSf "$BASE/.well-known/openid-configuration" | jsget 'j.jwks_uri' | grep -qx "$BASE/jwks" || die "discovery jwks_uri"

JWKS="$(curl -sSf "$BASE/jwks")"
echo "JWKS kids: $(echo "$JWKS" | jsget 'j.keys.map(k=>k.kid+"/"+k.use+"/"+k.alg).join(" ")')"

echo "token for svc-acme (client_secret_basic, resource+scope):"
T1="$(token -u svc-acme:secret-acme-123 -d grant_type=client_credentials -d resource=tokenvendor -d scope=read)"
check_token "$T1" "$JWKS" || die "svc-acme token"
expect iss "$(claim "$T1" 2 iss)" "$BASE"
expect aud "$(claim "$T1" 2 aud)" "tokenvendor"
expect sub "$(claim "$T1" 2 sub)" "svc-acme"
expect tenant_id "$(claim "$T1" 2 tenant_id)" "acme"
expect scope "$(claim "$T1" 2 scope)" "read"
expect alg "$(claim "$T1" 1 alg)" "RS256"

echo "token for worker (client_secret_post, no resource, no scope):"
T2="$(token -d grant_type=client_credentials -d client_id=worker -d client_secret=secret-worker-1)"
check_token "$T2" "$JWKS" || die "worker token"
expect aud "$(claim "$T2" 2 aud)" "tokenvendor"
expect sub "$(claim "$T2" 2 sub)" "worker"
expect tenant_id "$(claim "$T2" 2 tenant_id)" "<undefined>"
expect scope "$(claim "$T2" 2 scope)" "<undefined>"

echo "bad secret is rejected:"
code="$(curl -s -o /dev/null -w '%{http_code}' -u svc-acme:nope -d grant_type=client_credentials "$BASE/token")"
expect "status" "$code" "401"

OLD_KID="$(claim "$T1" 1 kid)"

echo "SIGUSR1 (rotate):"
kill -USR1 "$SERVER_PID"
wait_for_line '^rotated: '
T3="$(token -u worker:secret-worker-1 -d grant_type=client_credentials -d resource=tokenvendor -d scope=tokenvendor:any-tenant)"
NEW_KID="$(claim "$T3" 1 kid)"
[ "$NEW_KID" != "$OLD_KID" ] || die "kid did not change after SIGUSR1"
JWKS="$(curl -sSf "$BASE/jwks")"
check_token "$T3" "$JWKS" || die "rotated token"
check_token "$T1" "$JWKS" >/dev/null || die "old token no longer verifies after SIGUSR1"
expect "JWKS kids" "$(echo "$JWKS" | jsget 'j.keys.map(k=>k.kid).join(",")')" "$NEW_KID,$OLD_KID"

echo "SIGUSR2 (retire old keys):"
kill -USR2 "$SERVER_PID"
wait_for_line '^retired: '
JWKS="$(curl -sSf "$BASE/jwks")"
expect "JWKS kids" "$(echo "$JWKS" | jsget 'j.keys.map(k=>k.kid).join(",")')" "$NEW_KID"
T4="$(token -u svc-acme:secret-acme-123 -d grant_type=client_credentials -d resource=tokenvendor)"
expect "kid after retire" "$(claim "$T4" 1 kid)" "$NEW_KID"

echo "SIGTERM:"
kill -TERM "$SERVER_PID"
rc=0; wait "$SERVER_PID" || rc=$?
SERVER_PID=""
expect "exit code" "$rc" "0"
if [ -s "$ERR" ]; then echo "server stderr:"; cat "$ERR"; fi
echo "PASS"
