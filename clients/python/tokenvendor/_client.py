"""The client: tokenvendor's POST /credentials behind botocore's refreshable
credentials."""

import json
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime

import boto3
import botocore.credentials
import botocore.session

_MAX_BODY = 64 << 10


class TokenVendorError(Exception):
    """tokenvendor refused, or could not be reached.

    status is the HTTP status (0 when no answer came), code and message are
    the service's error body. The caller's token is never part of it.
    """

    def __init__(self, status, code, message):
        super().__init__(f"tokenvendor: {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class _Provider(botocore.credentials.CredentialProvider):
    """Hands botocore one tenant's shared credentials object."""

    METHOD = "tokenvendor"
    CANONICAL_NAME = "tokenvendor"

    def __init__(self, credentials):
        super().__init__()
        self._credentials = credentials

    def load(self):
        return self._credentials


class Client:
    """Gets tenants' AWS credentials from tokenvendor.

    url is tokenvendor's base URL: https, or http on a loopback address.
    token is the caller's token, a str or a callable returning one; a
    callable is called for every request to tokenvendor (a projected token
    file rotates), and once more after a 401. profile names the profile
    when tokenvendor has several. verify is True, False or a CA bundle path.

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
        self._ssl = None
        if parsed.scheme == "https":
            if verify is False:
                self._ssl = ssl._create_unverified_context()
            elif isinstance(verify, str):
                self._ssl = ssl.create_default_context(cafile=verify)
            else:
                self._ssl = ssl.create_default_context()
        self._lock = threading.Lock()
        self._credentials = {}

    def session(self, tenant_id=None, region_name=None):
        """A boto3.Session acting for tenant_id (None: the token's own
        tenant). Every session of one tenant shares one credentials object;
        it is fetched on first use, not here."""
        bs = botocore.session.Session()
        bs.get_component("credential_provider").insert_before("env", _Provider(self.credentials(tenant_id)))
        return boto3.Session(botocore_session=bs, region_name=region_name)

    def credentials(self, tenant_id=None):
        """The tenant's shared botocore credentials object."""
        with self._lock:
            creds = self._credentials.get(tenant_id)
            if creds is None:
                creds = botocore.credentials.DeferredRefreshableCredentials(
                    refresh_using=lambda: self._fetch(tenant_id), method="tokenvendor"
                )
                self._credentials[tenant_id] = creds
            return creds

    def _token_value(self):
        return self._token() if callable(self._token) else self._token

    def _fetch(self, tenant_id):
        """POST /credentials; on a 401 once more with a token asked anew."""
        try:
            return self._post(tenant_id)
        except TokenVendorError as err:
            if err.status != 401 or not callable(self._token):
                raise
        return self._post(tenant_id)

    def _post(self, tenant_id):
        body = {}
        if self._profile:
            body["profile"] = self._profile
        if tenant_id:
            body["tenant_id"] = tenant_id
        req = urllib.request.Request(
            self._endpoint,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": "Bearer " + self._token_value()},
        )
        try:
            with urllib.request.urlopen(req, timeout=self._timeout, context=self._ssl) as res:
                payload = res.read(_MAX_BODY)
        except urllib.error.HTTPError as err:
            raise _refusal(err.code, err.read(_MAX_BODY)) from None
        except (urllib.error.URLError, OSError) as err:
            raise TokenVendorError(0, "unreachable", str(getattr(err, "reason", err))) from None
        try:
            c = json.loads(payload)
            return {
                "access_key": c["AccessKeyId"],
                "secret_key": c["SecretAccessKey"],
                "token": c["SessionToken"],
                "expiry_time": _rfc3339(c["Expiration"]),
            }
        except (ValueError, KeyError, TypeError):
            raise TokenVendorError(200, "unexpected_answer", "no credentials in the answer") from None


def _refusal(status, payload):
    try:
        body = json.loads(payload)
        return TokenVendorError(status, body["code"], body.get("message", ""))
    except (ValueError, KeyError, TypeError):
        return TokenVendorError(status, "unexpected_answer", "the answer is not tokenvendor's error body")


def _rfc3339(value):
    """An RFC 3339 time as botocore wants it (it parses ISO 8601)."""
    datetime.fromisoformat(value.replace("Z", "+00:00"))  # refuse what is not a time
    return value
