"""A token source for callers with an AWS identity but no identity provider
(an ECS task, a Lambda function): a signed sts:GetCallerIdentity request,
which tokenvendor sends to STS to learn who signed it."""

import base64
import json
import re
import threading
import time
import urllib.parse

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.exceptions

from ._client import _AWS_IAM_SCHEME, TokenVendorError

# The signed header naming the tokenvendor the request is for: a request
# signed for another service (or another tokenvendor) is refused by it.
SERVER_ID_HEADER = "X-Tokenvendor-Server-Id"
# The only request tokenvendor accepts signed.
_BODY = "Action=GetCallerIdentity&Version=2011-06-15"
_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
# tokenvendor accepts a signature this long after X-Amz-Date.
_MAX_AGE = 300
# What tokenvendor accepts as auth.aws_iam.server_id.
_SERVER_ID = re.compile(r"[!-~]{1,256}")


# The regions whose STS has a FIPS endpoint, as tokenvendor's sts.fips
# knows them (internal/partition, from aws-sdk-go-v2's endpoint table).
_FIPS_STS = {
    "us-east-1": "sts-fips.us-east-1.amazonaws.com",
    "us-east-2": "sts-fips.us-east-2.amazonaws.com",
    "us-west-1": "sts-fips.us-west-1.amazonaws.com",
    "us-west-2": "sts-fips.us-west-2.amazonaws.com",
    "us-gov-east-1": "sts.us-gov-east-1.amazonaws.com",
    "us-gov-west-1": "sts.us-gov-west-1.amazonaws.com",
}


def aws_iam_token(server_id, region, sts_endpoint=None, session=None, reuse=60, fips=False, _now=time.monotonic):
    """A token source for Client(token=...) proving the process's own AWS
    identity (its task or function role) to tokenvendor without a JWT.

    Each call returns "AWS-IAM " and a signed sts:GetCallerIdentity request
    covering X-Tokenvendor-Server-Id: server_id, signed for region with the
    credentials of session (default boto3.Session(): the environment, the
    container or instance role). server_id, region and sts_endpoint must be
    tokenvendor's auth.aws_iam server_id, region and sts_endpoint (default
    https://sts.REGION.amazonaws.com, .com.cn in China, as tokenvendor's;
    with fips, as tokenvendor's sts.fips, the region's FIPS endpoint, and a
    ValueError where the region has none).

    One signature is returned again for reuse seconds (while the access key
    is the same), so that tokenvendor answers repeats from its cache instead
    of asking STS; tokenvendor accepts one for 5 minutes, hence 0 < reuse <
    300. Credentials are resolved on the first call, not here, and frozen at
    each signing, so refreshable ones are fine. A call without credentials
    raises TokenVendorError (code no_aws_credentials). Thread-safe.
    """
    if not isinstance(server_id, str) or not _SERVER_ID.fullmatch(server_id):
        raise ValueError("tokenvendor: server_id is 1 to 256 printable ASCII characters without spaces, as auth.aws_iam.server_id")
    if not isinstance(region, str) or not region:
        raise ValueError("tokenvendor: region is required, as auth.aws_iam.region")
    if not 0 < reuse < _MAX_AGE:
        raise ValueError(f"tokenvendor: reuse must be over 0 and under {_MAX_AGE} seconds, the life of a signature")
    if sts_endpoint is not None and fips:
        raise ValueError("tokenvendor: sts_endpoint and fips: set one (fips picks the region's FIPS endpoint)")
    if sts_endpoint is None and fips:
        if region not in _FIPS_STS:
            raise ValueError(f"tokenvendor: STS has no FIPS endpoint in {region}, and fips never falls back to the standard one")
        sts_endpoint = "https://" + _FIPS_STS[region]
    if sts_endpoint is None:
        # As tokenvendor's own default: the regional endpoint, not the
        # global one, which would scope the signature to us-east-1.
        sts_endpoint = f"https://sts.{region}.amazonaws.com" + (".cn" if region.startswith("cn-") else "")
    parsed = urllib.parse.urlsplit(sts_endpoint)
    if parsed.scheme not in ("https", "http") or not parsed.netloc or parsed.query or "@" in parsed.netloc:
        raise ValueError("tokenvendor: sts_endpoint is an http(s) URL without query or user, as auth.aws_iam.sts_endpoint")
    return _Signer(server_id, region, parsed._replace(path=parsed.path or "/").geturl(), parsed.netloc,
                   session or boto3.Session(), reuse, _now)


class _Signer:
    """The callable aws_iam_token returns."""

    def __init__(self, server_id, region, endpoint, host, session, reuse, now):
        self._server_id = server_id
        self._region = region
        self._endpoint = endpoint
        self._host = host
        self._session = session
        self._reuse = reuse
        self._now = now
        self._lock = threading.Lock()
        self._last = None  # (value, signed at, access key id)

    def __call__(self):
        creds = self._frozen_credentials()
        now = self._now()
        with self._lock:
            if self._last is not None:
                value, signed_at, key = self._last
                if key == creds.access_key and now - signed_at < self._reuse:
                    return value
            value = _AWS_IAM_SCHEME + self._sign(creds)
            self._last = (value, now, creds.access_key)
            return value

    def invalidate(self):
        """Forget the signature held for reuse, so the next call signs anew:
        the Client calls it after a 401, when what it presented may be a
        signature aged past what tokenvendor accepts (a clock that jumped,
        a process suspended). A new access key is signed with anyway."""
        with self._lock:
            self._last = None

    def _frozen_credentials(self):
        # Outside the lock: a refresh may take a while, and botocore's
        # refreshable credentials take their own lock for it.
        try:
            creds = self._session.get_credentials()
            frozen = creds.get_frozen_credentials() if creds is not None else None
        except botocore.exceptions.BotoCoreError as err:
            raise TokenVendorError(0, "no_aws_credentials", f"AWS credentials to sign with: {err}") from None
        if frozen is None or not frozen.access_key or not frozen.secret_key:
            raise TokenVendorError(0, "no_aws_credentials",
                                   "no AWS credentials to sign with (environment, profile, container or instance role)")
        return frozen

    def _sign(self, creds):
        """base64url (unpadded) of {"method", "headers", "body"}: the
        request as signed, every header in it signed."""
        # Host is set here rather than left to botocore, which derives it
        # from the URL without a default port: the host signed must be the
        # one tokenvendor sends, its endpoint's netloc as written.
        request = botocore.awsrequest.AWSRequest(method="POST", url=self._endpoint, data=_BODY, headers={
            "Host": self._host,
            "Content-Type": _CONTENT_TYPE,
            SERVER_ID_HEADER: self._server_id,
        })
        # Adds X-Amz-Date, X-Amz-Security-Token (with a session token) and
        # Authorization, and signs every header of the request but
        # Authorization (none of ours is on botocore's unsigned list).
        botocore.auth.SigV4Auth(creds, "sts", self._region).add_auth(request)
        doc = {"method": "POST", "headers": dict(request.headers.items()), "body": _BODY}
        raw = json.dumps(doc, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
