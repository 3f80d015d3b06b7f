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
"""

from ._client import Client, TokenVendorError
from ._scope import NoTenantError, bind, current_session, tenant, unbind

__all__ = ["Client", "TokenVendorError", "NoTenantError", "current_session", "tenant", "bind", "unbind"]
