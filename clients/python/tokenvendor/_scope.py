"""The tenant scope: the current tenant's session in a ContextVar."""

import contextvars
import functools
import inspect

_current = contextvars.ContextVar("tokenvendor_session")


class NoTenantError(LookupError):
    """current_session() was called outside a tenant scope."""


def current_session():
    """The boto3.Session of the tenant scope this code runs in.

    Raises NoTenantError outside a scope: a job or request with no tenant
    bound gets no credentials, rather than another tenant's."""
    try:
        return _current.get()
    except LookupError:
        raise NoTenantError("no tenant scope: wrap the request or job in tokenvendor.tenant(...)") from None


class tenant:
    """Binds a tenant's session for the code inside.

    As a context manager (sync or async):

        with tenant(client, "acme"):
            current_session().client("s3")

    As a decorator of sync or async functions, each call gets its own scope:

        @tenant(client, "acme")
        async def handle(): ...

    tenant_id None is the token's own tenant. Scopes nest; leaving one
    restores the enclosing tenant. Each thread and asyncio task has its own
    scope: a new thread starts with none (use contextvars.copy_context() to
    carry one into a thread pool).
    """

    def __init__(self, client, tenant_id=None, region_name=None):
        self._client = client
        self._tenant_id = tenant_id
        self._region = region_name
        self._tokens = []

    def __enter__(self):
        session = self._client.session(self._tenant_id, region_name=self._region)
        self._tokens.append(_current.set(session))
        return session

    def __exit__(self, *exc):
        _current.reset(self._tokens.pop())
        return False

    async def __aenter__(self):
        return self.__enter__()

    async def __aexit__(self, *exc):
        return self.__exit__(*exc)

    def __call__(self, func):
        def scope():
            return tenant(self._client, self._tenant_id, self._region)

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args, **kwargs):
                with scope():
                    return await func(*args, **kwargs)

            return run_async

        @functools.wraps(func)
        def run(*args, **kwargs):
            with scope():
                return func(*args, **kwargs)

        return run
