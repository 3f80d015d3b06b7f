#!/usr/bin/env bash
# The demo: MinIO as STS and enforcer, oidc-provider as the identity provider,
# tokenvendor in between, and the AWS CLI as the client. Two tenants get
# credentials from tokenvendor; each can write and read its own prefix of a
# shared bucket and is refused on the other's. Everything runs on loopback and
# is removed on exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools=${TOKENVENDOR_TOOLS:-$root/.tools}
bin=${TOKENVENDOR_BIN:-$root/bin/tokenvendor}
work=$(mktemp -d "${TMPDIR:-/tmp}/tokenvendor-demo.XXXXXX")
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_for() { # url what
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "demo: $2 did not come up; its log:" >&2
  cat "$work/$2.log" >&2
  exit 1
}
# moved prints the tokenvendor_ series of the second scrape whose value differs
# from the first's (a series absent from the first counts as 0): what the
# demo's requests changed. Histograms' buckets, sums and counts, and the
# scrapes' own count, are left out.
moved() { # before after
  awk '
    /^#/ { next }
    { i = match($0, / [^ ]+$/); series = substr($0, 1, i - 1); value = substr($0, i + 1) }
    NR == FNR { before[series] = value; next }
    series !~ /^tokenvendor_/ || series ~ /_(bucket|sum|count)(\{|$)/ || series ~ /route="\/metrics"/ { next }
    value + 0 != before[series] + 0 { printf "  %s %s\n", series, value }
  ' "$1" "$2"
}
json() { python3 -c "import json,sys; v=json.load(sys.stdin)$1; print(v if isinstance(v, str) else json.dumps(v))"; }

minio_port=$(free_port); console_port=$(free_port); oidc_port=$(free_port); tv_port=$(free_port)
minio="http://127.0.0.1:$minio_port"
oidc="http://127.0.0.1:$oidc_port"
tv="http://127.0.0.1:$tv_port"
export MINIO_ROOT_USER=demo-root MINIO_ROOT_PASSWORD=demo-root-password

step "Starting MinIO (STS and S3, enforcing session policies) on $minio"
MINIO_BROWSER=off "$tools/bin/minio" server "$work/minio" --address "127.0.0.1:$minio_port" \
  --console-address "127.0.0.1:$console_port" >"$work/minio.log" 2>&1 &
pids+=($!)
wait_for "$minio/minio/health/ready" minio
AWS_ACCESS_KEY_ID=$MINIO_ROOT_USER AWS_SECRET_ACCESS_KEY=$MINIO_ROOT_PASSWORD AWS_DEFAULT_REGION=us-east-1 \
  aws --endpoint-url "$minio" s3api create-bucket --bucket tenant-data >/dev/null
echo "bucket tenant-data created (shared by every tenant: the pool model)"

step "Starting the identity provider (oidc-provider) on $oidc"
clients='[{"client_id":"orders-acme","client_secret":"demo-secret-acme","tenant_id":"acme"},
          {"client_id":"orders-globex","client_secret":"demo-secret-globex","tenant_id":"globex"}]'
cp "$root/e2e/oidc/server.mjs" "$tools/oidc/server.mjs"
PORT=$oidc_port ISSUER=$oidc AUDIENCE=tokenvendor CLIENTS=$clients node "$tools/oidc/server.mjs" >"$work/oidc.log" 2>&1 &
pids+=($!)
wait_for "$oidc/jwks" oidc
echo "clients orders-acme (tenant acme) and orders-globex (tenant globex) registered"

step "Starting tokenvendor on $tv with examples/config.yaml"
sed -e "s#127.0.0.1:9400#127.0.0.1:$oidc_port#g" -e "s#127.0.0.1:9000#127.0.0.1:$minio_port#g" \
    -e "s#127.0.0.1:8080#127.0.0.1:$tv_port#g" "$root/examples/config.yaml" >"$work/config.yaml"
"$bin" check --config "$work/config.yaml"
# The service's own AWS credentials (here MinIO's root user) sign its AssumeRole calls.
AWS_ACCESS_KEY_ID=$MINIO_ROOT_USER AWS_SECRET_ACCESS_KEY=$MINIO_ROOT_PASSWORD AWS_REGION=us-east-1 \
  "$bin" serve --config "$work/config.yaml" >"$work/tokenvendor.log" 2>&1 &
pids+=($!)
wait_for "$tv/readyz" tokenvendor
echo "ready"
curl -fsS "$tv/metrics" >"$work/metrics.before"

echo
echo "The session policy acme's credentials will carry (tokenvendor render):"
"$bin" render --config "$work/config.yaml" --profile objects --tenant acme | json "['Policy']"

declare -A creds
for tenant in acme globex; do
  step "Tenant $tenant: client_credentials token from the identity provider, then POST /credentials"
  token=$(curl -fsS -u "orders-$tenant:demo-secret-$tenant" -d grant_type=client_credentials \
    -d resource=tokenvendor "$oidc/token" | json "['access_token']")
  body=$(curl -fsS -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"profile":"objects"}' "$tv/credentials")
  creds[$tenant]=$body
  echo "$body" | python3 -c 'import json,sys; c=json.load(sys.stdin); print("  TenantId=%s AccessKeyId=%s Expiration=%s (secret and session token not shown)" % (c["TenantId"], c["AccessKeyId"], c["Expiration"]))'
done

failures=0
as_tenant() { # tenant, aws args...
  local c=${creds[$1]}; shift
  AWS_ACCESS_KEY_ID=$(echo "$c" | json "['AccessKeyId']") \
  AWS_SECRET_ACCESS_KEY=$(echo "$c" | json "['SecretAccessKey']") \
  AWS_SESSION_TOKEN=$(echo "$c" | json "['SessionToken']") \
  AWS_DEFAULT_REGION=us-east-1 aws --endpoint-url "$minio" "$@"
}
expect() { # allowed|denied tenant description aws args...
  local want=$1 tenant=$2 what=$3; shift 3
  if out=$(as_tenant "$tenant" "$@" 2>&1); then got=allowed; else got=denied; fi
  if [ "$got" = denied ] && ! grep -q AccessDenied <<<"$out"; then got="failed: $out"; fi
  if [ "$got" = "$want" ]; then mark=ok; else mark="UNEXPECTED ($got)"; failures=$((failures + 1)); fi
  printf '  %-7s %-48s %-8s %s\n' "$tenant" "$what" "$want" "$mark"
}

step "The AWS CLI with each tenant's credentials against the shared bucket"
echo "hello from acme" >"$work/acme.txt"; echo "hello from globex" >"$work/globex.txt"
printf '  %-7s %-48s %-8s %s\n' tenant action expected result
for t in acme globex; do
  o=$([ "$t" = acme ] && echo globex || echo acme)
  expect allowed "$t" "put s3://tenant-data/$t/hello.txt" s3api put-object --bucket tenant-data --key "$t/hello.txt" --body "$work/$t.txt"
  expect allowed "$t" "get s3://tenant-data/$t/hello.txt" s3api get-object --bucket tenant-data --key "$t/hello.txt" "$work/$t.out"
  expect allowed "$t" "list s3://tenant-data/$t/" s3api list-objects-v2 --bucket tenant-data --prefix "$t/"
done
for t in acme globex; do
  o=$([ "$t" = acme ] && echo globex || echo acme)
  expect denied "$t" "put s3://tenant-data/$o/hello.txt" s3api put-object --bucket tenant-data --key "$o/hello.txt" --body "$work/$t.txt"
  expect denied "$t" "get s3://tenant-data/$o/hello.txt" s3api get-object --bucket tenant-data --key "$o/hello.txt" "$work/$t.stolen"
  expect denied "$t" "list s3://tenant-data/$o/" s3api list-objects-v2 --bucket tenant-data --prefix "$o/"
done

step "What the operator sees on /metrics: the series that moved during the demo"
curl -fsS "$tv/metrics" >"$work/metrics.after"
moved "$work/metrics.before" "$work/metrics.after"

echo
if [ "$failures" -ne 0 ]; then
  echo "demo: $failures check(s) did not go as expected" >&2
  exit 1
fi
echo "demo: done. Each tenant wrote and read only its own prefix; IAM (here MinIO) refused the rest."
