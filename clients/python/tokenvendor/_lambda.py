"""Lambda functions in tenant isolation mode: the function proves itself
(a signed sts:GetCallerIdentity, see _awsiam), its caller's token proves
the tenant, and one execution environment serves one tenant."""

import base64
import json
import re
import threading

import botocore.credentials

from ._awsiam import aws_iam_token
from ._client import Client, TokenVendorError, _Credentials

# The header carrying the end user's token beside the function's own
# signature in Authorization.
TENANT_TOKEN_HEADER = "X-Tokenvendor-Tenant-Token"
# RFC 6750's b64token, which a JWT is; anything else (a space, a line
# break) could not travel in a header anyway.
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_MAX_TOKEN = 16 << 10
_BEARER = "bearer "


class TenantIsolationError(RuntimeError):
    """The invoke carries no tenant id, or this process, pinned to one
    tenant, was invoked for another. Once a second tenant has been seen,
    every later call raises it too: an environment that served two tenants
    serves none."""


class _TwoProofClient(Client):
    """A Client that sends the tenant's token beside its own signature."""

    def __init__(self, url, signer, tenant_token, **kwargs):
        super().__init__(url, token=signer, **kwargs)
        self._tenant_token = tenant_token

    def _headers(self):
        headers = super()._headers()
        headers[TENANT_TOKEN_HEADER] = self._tenant_token()
        return headers


class _PinnedCredentials(_Credentials):
    """The process's one tenant's credentials, which refuse to be used at
    all once the tripwire has fired: clients made before it stop signing."""

    def __init__(self, fetch, check, time_fetcher):
        self._check = check
        super().__init__(fetch, time_fetcher=time_fetcher)

    def _refresh(self):
        self._check()
        super()._refresh()

    def get_frozen_credentials(self):
        self._check()
        return super().get_frozen_credentials()


class LambdaTenant:
    """The tenant's AWS session in a Lambda function in tenant isolation
    mode (TenancyConfig PER_TENANT). Make one per process, at module level:

        tv = tokenvendor.LambdaTenant(os.environ["TOKENVENDOR_URL"],
                                      server_id=os.environ["TOKENVENDOR_SERVER_ID"],
                                      region=os.environ["TOKENVENDOR_REGION"])

        def handler(event, context):
            s3 = tv.session(context, tokenvendor.event_token(event)).client("s3")

    Each request to tokenvendor carries two proofs: Authorization "AWS-IAM
    ..." (aws_iam_token: a sts:GetCallerIdentity signed with the
    function's execution role, which tokenvendor's auth.aws_iam.principals
    maps with tenant_from: token) and X-Tokenvendor-Tenant-Token, the
    caller's token that API Gateway's authorizer verified; the body names
    the invoke's tenant (context.tenant_id). tokenvendor refuses unless the
    token's tenant and the invoke's agree.

    url, profile, timeout and verify are as Client's; server_id, region,
    sts_endpoint and session (whose credentials sign; default
    boto3.Session(), the execution role) as aws_iam_token's. tenant_claim
    is tokenvendor's auth.tenant_claim: each invoke's token must name the
    invoke's tenant there, checked here before anything is used (a token
    decoded, not verified: it only ever refuses; tokenvendor verifies).

    The first tenant id seen is pinned for the process: one environment
    serves one tenant, so one boto3.Session, one credentials object and one
    request to tokenvendor serve every invoke until the credentials are
    refreshed. An invoke without a tenant id raises TenantIsolationError;
    one for another tenant raises it and trips the wire: every later call
    raises, and sessions already handed out stop working.

    Nothing touches the network here. No token or credential is logged or
    put in an exception.
    """

    def __init__(self, url, server_id, region, profile=None, sts_endpoint=None, timeout=10, verify=True,
                 tenant_claim="tenant_id", session=None, _time_fetcher=botocore.credentials._local_now):
        if not isinstance(tenant_claim, str) or not tenant_claim:
            raise ValueError("tokenvendor: tenant_claim is the claim naming the tenant, as auth.tenant_claim")
        signer = aws_iam_token(server_id, region, sts_endpoint=sts_endpoint, session=session)
        self._client = _TwoProofClient(url, signer, self._latest_token, profile=profile, timeout=timeout, verify=verify)
        self._tenant_claim = tenant_claim
        self._time_fetcher = _time_fetcher
        self._lock = threading.Lock()
        self._tenant = None
        self._tripped = None  # the reason, once a second tenant appeared
        self._token = None
        self._credentials = None
        self._session = None

    @property
    def tenant_id(self):
        """The tenant this process is pinned to; None before the first invoke."""
        return self._tenant

    def session(self, context, tenant_token):
        """The boto3.Session of the invoke's tenant (context.tenant_id), the
        same object for every invoke of the process. tenant_token is the
        caller's token (with or without "Bearer "), kept for the next
        request to tokenvendor. Credentials are fetched on first use, not
        here."""
        self._admit(context, tenant_token)
        with self._lock:
            if self._session is None:
                self._session = self._client._session_with(self._credentials, None)
            return self._session

    def credentials(self, context, tenant_token):
        """The botocore credentials of the invoke's tenant, as session()'s."""
        self._admit(context, tenant_token)
        return self._credentials

    def _admit(self, context, tenant_token):
        """Checks the invoke against the pinned tenant, then its token, and
        keeps the token for the next request to tokenvendor."""
        tenant = getattr(context, "tenant_id", None)
        with self._lock:
            self._check_locked()
            if not isinstance(tenant, str) or not tenant:
                raise TenantIsolationError(
                    "tokenvendor: the invoke has no tenant id: is the function in tenant isolation mode (TenancyConfig PER_TENANT)?")
            if self._tenant is None:
                self._tenant = tenant
                self._credentials = _PinnedCredentials(self._fetch, self._check, self._time_fetcher)
            elif tenant != self._tenant:
                self._tripped = (f"tokenvendor: this environment serves tenant {_short(self._tenant)} and was invoked for "
                                 f"{_short(tenant)}; it serves no tenant any more")
                self._check_locked()
        token = _bare(tenant_token)
        claimed = _claim(_claims(token), self._tenant_claim)
        if claimed != tenant:
            raise TokenVendorError(0, "tenant_mismatch",
                                   f"the tenant token's {self._tenant_claim} is not the invoke's tenant {_short(tenant)}")
        with self._lock:
            self._token = token

    def _check(self):
        with self._lock:
            self._check_locked()

    def _check_locked(self):
        if self._tripped is not None:
            raise TenantIsolationError(self._tripped)

    def _latest_token(self):
        with self._lock:
            return self._token

    def _fetch(self):
        """The pinned tenant's credentials, asked for with the newest token."""
        self._check()
        return self._client._fetch(self._tenant)


def event_token(event):
    """The caller's token in an API Gateway proxy event: its Authorization
    header (any case), without "Bearer "; None without one."""
    headers = event.get("headers") if isinstance(event, dict) else None
    if not isinstance(headers, dict):
        return None
    for name, value in headers.items():
        if isinstance(name, str) and name.lower() == "authorization" and isinstance(value, str) and value:
            return value[len(_BEARER):] if value[:len(_BEARER)].lower() == _BEARER else value
    return None


def _bare(token):
    """The token without "Bearer ", refused when it is not one."""
    if isinstance(token, str):
        token = token.strip()
        if token[:len(_BEARER)].lower() == _BEARER:
            token = token[len(_BEARER):].lstrip()
    if not isinstance(token, str) or not token or token.lower() == _BEARER.strip():
        raise TokenVendorError(0, "no_tenant_token", "no tenant token: forward the caller's token that the authorizer verified")
    if len(token) > _MAX_TOKEN or not _TOKEN.fullmatch(token):
        raise TokenVendorError(0, "invalid_tenant_token", "the tenant token is not a bearer token")
    return token


def _claims(token):
    """A JWT's claims, decoded but not verified."""
    parts = token.split(".")
    try:
        if len(parts) != 3:
            raise ValueError
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, TypeError):
        claims = None
    if not isinstance(claims, dict):
        raise TokenVendorError(0, "invalid_tenant_token", "the tenant token is not a JWT")
    return claims


def _claim(claims, path):
    """The non-empty string at a dotted path into the claims, names with
    dots matched longest first at each level, as tokenvendor reads
    auth.tenant_claim; None without one."""
    if not isinstance(claims, dict):
        return None
    if path in claims:
        value = claims[path]
        return value if isinstance(value, str) and value else None
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:i])
        if head in claims:
            return _claim(claims[head], ".".join(parts[i:]))
    return None


def _short(tenant):
    """A tenant id fit for a message: Lambda accepts 256 characters of nearly anything."""
    return repr(tenant if len(tenant) <= 64 else tenant[:64] + "...")
