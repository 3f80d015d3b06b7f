"""The example function of template.yaml: lists the invoke's tenant's
objects with the tenant's credentials from tokenvendor.

Packaged with the tokenvendor package beside it (boto3 is in Lambda's
Python runtime); see docs/deploy-lambda.md and docs/callers.md ("Lambda
functions in tenant isolation mode")."""

import json
import os

import tokenvendor

# Module level: one per process, which Lambda never gives two tenants.
# Nothing touches the network here.
tv = tokenvendor.LambdaTenant(
    os.environ["TOKENVENDOR_URL"],
    server_id=os.environ["TOKENVENDOR_SERVER_ID"],
    region=os.environ["TOKENVENDOR_REGION"],
    profile=os.environ.get("TOKENVENDOR_PROFILE") or None,
)
BUCKET = os.environ["DATA_BUCKET"]
# What the caller is told of a refusal; anything else (tokenvendor or STS
# unreachable, throttled) is 503.
_STATUS = {
    "no_tenant_token": 401, "invalid_tenant_token": 401, "unauthenticated": 401,
    "forbidden": 403, "invalid_tenant": 403, "tenant_mismatch": 403,
}


def handler(event, context):
    # TenantIsolationError (no tenant id, or a second tenant in this
    # environment) is not caught: the invoke fails, as will every later one
    # here.
    try:
        s3 = tv.session(context, tokenvendor.event_token(event)).client("s3")
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=context.tenant_id + "/", MaxKeys=100)
    except tokenvendor.TokenVendorError as err:
        # tokenvendor's code, never the token (TokenVendorError holds none).
        return _answer(_STATUS.get(err.code, 503), {"code": err.code})
    return _answer(200, {"tenant": context.tenant_id, "keys": [o["Key"] for o in listed.get("Contents", [])]})


def _answer(status, body):
    return {"statusCode": status, "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
            "body": json.dumps(body)}
