"""The client: tokenvendor's POST /credentials behind botocore's refreshable
credentials."""

import http.client
import json
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime

import boto3
import botocore.credentials
import botocore.loaders
import botocore.session

_MAX_BODY = 64 << 10

# botocore refreshes credentials this long before they expire (advisory:
# one thread tries, the others go on with the old ones) and must have new
# ones this long before (mandatory: every thread waits) -- at most; short
# credentials get half and a quarter of their remaining life instead, so
# that they are not fetched again on every call.
_ADVISORY, _MANDATORY = 15 * 60, 10 * 60
# After a failed refresh, the old credentials are used, and tokenvendor is
# asked again no sooner than this, or a quarter of their remaining life.
_RETRY = 30
# A token with this prefix is a whole Authorization value (a signed AWS
# request, see _awsiam), not a Bearer token.
_AWS_IAM_SCHEME = "AWS-IAM "


class TokenVendorError(Exception):
    """tokenvendor refused, could not be reached, or answered oddly.

    status is the HTTP status (0 when no answer came), code and message are
    the service's error body (or the client's own code: unreachable,
    unexpected_answer, tenant_mismatch), retry_after the Retry-After of a
    429 or 503 in seconds (None without one). The caller's token is never
    part of it.
    """

    def __init__(self, status, code, message, retry_after=None):
        super().__init__(status, code, message, retry_after)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def __str__(self):
        return f"tokenvendor: {self.status} {self.code}: {self.message}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """tokenvendor never redirects; following one could send the token
    elsewhere, over plain http even."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class _Provider(botocore.credentials.CredentialProvider):
    """Hands botocore one tenant's shared credentials object."""

    METHOD = "tokenvendor"
    CANONICAL_NAME = "tokenvendor"

    def __init__(self, credentials):
        super().__init__()
        self._credentials = credentials

    def load(self):
        return self._credentials


class _Credentials(botocore.credentials.DeferredRefreshableCredentials):
    """One tenant's credentials: fetched on first use, refreshed ahead of
    expiry by one thread at a time (botocore's lock), with refresh windows
    that fit their life, and a back-off after a failed refresh while the
    old credentials are still good."""

    def __init__(self, fetch, time_fetcher=botocore.credentials._local_now):
        self._fetch = fetch
        self._failed_at = None
        super().__init__(refresh_using=self._fetch_and_fit, method="tokenvendor", time_fetcher=time_fetcher)

    def _fetch_and_fit(self):
        if self._failed_at is not None and time.monotonic() - self._failed_at < min(_RETRY, self._seconds_left() / 4):
            raise TokenVendorError(0, "backing_off", "the last refresh failed; asking again shortly")
        try:
            metadata = self._fetch()
        except Exception:
            self._failed_at = time.monotonic()
            raise
        self._failed_at = None
        left = (_parse_time(metadata["expiry_time"]) - self._time_fetcher()).total_seconds()
        self._advisory_refresh_timeout = min(_ADVISORY, left / 2)
        self._mandatory_refresh_timeout = min(_MANDATORY, left / 4)
        return metadata

    def _seconds_left(self):
        expiry = getattr(self, "_expiry_time", None)
        if expiry is None:
            return 0
        return (expiry - self._time_fetcher()).total_seconds()


class Client:
    """Gets tenants' AWS credentials from tokenvendor, as one caller.

    url is tokenvendor's base URL: https, or http on a loopback address.
    token is the caller's token, a str or a callable returning one; a
    callable is called for every request to tokenvendor (a projected token
    file rotates), and once more after a 401. It is sent as a Bearer
    token, but one starting with "AWS-IAM " (tokenvendor.aws_iam_token's
    signed request) is a whole Authorization value and is sent as it is.
    It must always be the same caller's token: a tenant's credentials serve
    every session of that tenant, so a service forwarding its users' tokens
    makes a Client per user. profile names the profile when tokenvendor has
    several. verify is True, False or a CA bundle path.

    Thread-safe: sessions of one tenant share one credentials object, whose
    refresh takes a lock, so it happens once.
    """

    def __init__(self, url, token, profile=None, timeout=10, verify=True):
        parsed = urllib.parse.urlparse(url)
        if not parsed.netloc:
            raise ValueError("tokenvendor: url is not an absolute URL")
        loopback = parsed.hostname in ("localhost", "127.0.0.1", "::1")
        if parsed.scheme != "https" and not (parsed.scheme == "http" and loopback):
            raise ValueError("tokenvendor: url must be https (http only on loopback): the answer holds credentials")
        if not (isinstance(token, str) or callable(token)):
            raise TypeError("tokenvendor: token is a str or a callable returning one")
        self._endpoint = url.rstrip("/") + "/credentials"
        self._token = token
        self._profile = profile
        self._timeout = timeout
        context = None
        if parsed.scheme == "https":
            context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
            if verify is False:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        handlers = [_NoRedirect(), urllib.request.HTTPSHandler(context=context)]
        if loopback:
            # A proxy on the way to loopback would see the token and the
            # credentials in clear.
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)
        # Loading the AWS service models is most of the cost of a session;
        # every session of this client shares one loader.
        self._loader = botocore.loaders.create_loader()
        self._lock = threading.Lock()
        self._credentials = {}
        self._own_tenant = None

    def session(self, tenant_id=None, region_name=None):
        """A boto3.Session acting for tenant_id (None: the token's own
        tenant). Every session of one tenant shares one credentials object;
        it is fetched on first use, not here. Clients made from the session
        are thread-safe and worth keeping per tenant."""
        return self._session_with(self.credentials(tenant_id), region_name)

    def _session_with(self, credentials, region_name):
        """A boto3.Session whose only credentials are credentials: never
        the environment's, nor any other source botocore knows."""
        bs = botocore.session.Session()
        bs.register_component("data_loader", self._loader)
        bs.get_component("credential_provider").insert_before("env", _Provider(credentials))
        return boto3.Session(botocore_session=bs, region_name=region_name)

    def credentials(self, tenant_id=None):
        """The tenant's shared botocore credentials object."""
        with self._lock:
            creds = self._credentials.get(tenant_id)
            if creds is None:
                creds = _Credentials(lambda: self._fetch(tenant_id))
                self._credentials[tenant_id] = creds
            return creds

    def _authorization(self):
        """The Authorization header: a signed AWS request carries its own
        scheme (AWS-IAM), anything else is a Bearer token."""
        token = self._token() if callable(self._token) else self._token
        if token.startswith(_AWS_IAM_SCHEME):
            return token
        return "Bearer " + token

    def _headers(self):
        """The headers of a request to tokenvendor, its token asked anew."""
        return {"Content-Type": "application/json", "Authorization": self._authorization()}

    def _fetch(self, tenant_id):
        """POST /credentials (once more with a token asked anew after a 401)
        and check the answer is for the tenant asked for."""
        try:
            metadata, answered = self._post(tenant_id)
        except TokenVendorError as err:
            if err.status != 401 or not callable(self._token):
                raise
            # A token source that reuses what it made (aws_iam_token's
            # signature) is told to make it anew.
            invalidate = getattr(self._token, "invalidate", None)
            if invalidate is not None:
                invalidate()
            metadata, answered = self._post(tenant_id)
        with self._lock:
            want = tenant_id or self._own_tenant
            if want and answered != want:
                raise TokenVendorError(200, "tenant_mismatch",
                                       f"asked for tenant {want!r}, tokenvendor answered for {answered!r}: is token one caller's?")
            if tenant_id is None:
                self._own_tenant = answered
        return metadata

    def _post(self, tenant_id):
        body = {}
        if self._profile:
            body["profile"] = self._profile
        if tenant_id:
            body["tenant_id"] = tenant_id
        req = urllib.request.Request(self._endpoint, data=json.dumps(body).encode(), method="POST", headers=self._headers())
        try:
            with self._opener.open(req, timeout=self._timeout) as res:
                status, payload = res.status, res.read(_MAX_BODY)
        except urllib.error.HTTPError as err:
            raise _refusal(err.code, err.read(_MAX_BODY), err.headers.get("Retry-After")) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            raise TokenVendorError(0, "unreachable", str(getattr(err, "reason", err))) from None
        if status != 200:
            raise TokenVendorError(status, "unexpected_answer", "not the 200 of credentials")
        try:
            c = json.loads(payload)
            _parse_time(c["Expiration"])
            return {
                "access_key": c["AccessKeyId"],
                "secret_key": c["SecretAccessKey"],
                "token": c["SessionToken"],
                "expiry_time": c["Expiration"],
            }, c.get("TenantId")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TokenVendorError(status, "unexpected_answer", "no credentials in the answer") from None


def _refusal(status, payload, retry_after):
    seconds = int(retry_after) if retry_after and retry_after.isdigit() else None
    try:
        body = json.loads(payload)
        return TokenVendorError(status, body["code"], body.get("message", ""), seconds)
    except (ValueError, KeyError, TypeError):
        return TokenVendorError(status, "unexpected_answer", "the answer is not tokenvendor's error body", seconds)


def _parse_time(value):
    """An RFC 3339 time, as tokenvendor writes Expiration."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
