"""Tenant-scoped AWS sessions from tokenvendor, for services that serve many
tenants in one process.

    client = tokenvendor.Client("https://tokenvendor.tokenvendor.svc", token=read_token)

    with tokenvendor.tenant(client, "acme"):
        s3 = tokenvendor.current_session().client("s3")   # reaches acme's objects only

Each tenant's credentials come from tokenvendor's cache (one AssumeRole per
tenant, not per request) and are refreshed ahead of expiry, once, however many
threads use them. The scope is a contextvars.ContextVar: every thread and every
asyncio task sees its own tenant, and nothing is left over for the next
request. Nothing touches the network at import.

A caller with an AWS identity but no identity provider (an ECS task, a
Lambda function) proves it with a signed sts:GetCallerIdentity instead of a
token:

    client = tokenvendor.Client(url, token=tokenvendor.aws_iam_token(server_id="tokenvendor.prod", region="us-east-1"))

A Lambda function in tenant isolation mode (TenancyConfig PER_TENANT) proves
both: itself with that signature, its tenant with the caller's token that
API Gateway's authorizer verified. One environment serves one tenant, so
one session serves the process, and a second tenant id fails closed:

    tv = tokenvendor.LambdaTenant(url, server_id="tokenvendor.prod", region="us-east-1")   # module level

    def handler(event, context):
        s3 = tv.session(context, tokenvendor.event_token(event)).client("s3")
"""

from ._awsiam import aws_iam_token
from ._client import Client, TokenVendorError
from ._lambda import LambdaTenant, TenantIsolationError, event_token
from ._scope import NoTenantError, bind, current_session, tenant, unbind

__all__ = ["Client", "TokenVendorError", "NoTenantError", "current_session", "tenant", "bind", "unbind", "aws_iam_token",
           "LambdaTenant", "TenantIsolationError", "event_token"]
