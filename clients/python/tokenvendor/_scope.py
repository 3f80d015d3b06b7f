"""The tenant scope: the current tenant's session in a ContextVar."""

import contextvars
import functools
import inspect

# A tuple of sessions: the innermost scope's last. Each thread and asyncio
# task has its own; a scope object keeps nothing, so one object may be
# entered by many threads and tasks at once.
_current = contextvars.ContextVar("tokenvendor_sessions", default=())


class NoTenantError(LookupError):
    """current_session() was called outside a tenant scope."""


def current_session():
    """The boto3.Session of the tenant scope this code runs in.

    Raises NoTenantError outside a scope: a job or request with no tenant
    bound gets no credentials, rather than another tenant's."""
    sessions = _current.get()
    if not sessions:
        raise NoTenantError("no tenant scope: wrap the request or job in tokenvendor.tenant(...)")
    return sessions[-1]


def bind(client, tenant_id=None, region_name=None):
    """Binds a tenant's session in the current context until unbind(mark),
    for frameworks with separate before and after hooks (Flask's
    before_request and teardown_request). Returns the mark."""
    session = client.session(tenant_id, region_name=region_name)
    return _current.set(_current.get() + (session,))


def unbind(mark):
    """Undoes the bind that returned mark; it must run in the same context."""
    _current.reset(mark)


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
    carry one into a thread pool; asyncio.to_thread carries it). A scope
    held across a generator's yield is seen by its caller while it waits.
    """

    def __init__(self, client, tenant_id=None, region_name=None):
        self._client = client
        self._tenant_id = tenant_id
        self._region = region_name

    def __enter__(self):
        session = self._client.session(self._tenant_id, region_name=self._region)
        _current.set(_current.get() + (session,))
        return session

    def __exit__(self, *exc):
        _current.set(_current.get()[:-1])
        return False

    async def __aenter__(self):
        return self.__enter__()

    async def __aexit__(self, *exc):
        return self.__exit__(*exc)

    def __call__(self, func):
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args, **kwargs):
                with self:
                    return await func(*args, **kwargs)

            return run_async

        @functools.wraps(func)
        def run(*args, **kwargs):
            with self:
                return func(*args, **kwargs)

        return run
