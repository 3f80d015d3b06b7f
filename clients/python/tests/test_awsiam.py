import base64
import json
import re
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from unittest import mock

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.exceptions

import tokenvendor
from fake import FakeVendor

BODY = "Action=GetCallerIdentity&Version=2011-06-15"
AKID, SECRET, SESSION_TOKEN = "ASIAEXAMPLE0000001", "secret/key+example", "session-token-example"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer",
              "transfer-encoding", "upgrade", "expect"}
AUTHORIZATION = re.compile(r"AWS4-HMAC-SHA256 Credential=([^,]*), SignedHeaders=([a-z0-9-]+(?:;[a-z0-9-]+)*), Signature=([0-9a-f]{64})")


class Session:
    """A boto3.Session as far as aws_iam_token uses one."""

    def __init__(self, credentials):
        self.credentials = credentials

    def get_credentials(self):
        return self.credentials


def static(token=None, key=AKID, secret=SECRET):
    return Session(botocore.credentials.Credentials(key, secret, token))


def decode(token):
    """The JSON of an "AWS-IAM " token, decoded as strictly as tokenvendor
    does: base64url without padding, one object, no key twice."""
    scheme, _, value = token.partition(" ")
    assert scheme == "AWS-IAM", token[:20]
    assert re.fullmatch(r"[A-Za-z0-9_-]+", value), "not base64url without padding"

    def no_duplicates(pairs):
        keys = [k.lower() for k, _ in pairs]
        assert len(keys) == len(set(keys)), f"a key given twice: {keys}"
        return dict(pairs)

    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), object_pairs_hook=no_duplicates)


def authorization(doc):
    m = AUTHORIZATION.fullmatch(doc["headers"]["Authorization"])
    assert m, doc["headers"]["Authorization"]
    credential, signed, signature = m.groups()
    return credential.split("/"), signed.split(";"), signature


def recompute(doc, endpoint, region, key=AKID, secret=SECRET, token=None):
    """The signature of the request in doc, as STS computes it from what
    tokenvendor sends: the endpoint, the body and the headers but
    Authorization, at X-Amz-Date."""
    headers = {k: v for k, v in doc["headers"].items() if k != "Authorization"}
    request = botocore.awsrequest.AWSRequest(method=doc["method"], url=endpoint, data=doc["body"], headers=headers)
    request.context["timestamp"] = headers["X-Amz-Date"]  # add_auth would take the time now
    signer = botocore.auth.SigV4Auth(botocore.credentials.Credentials(key, secret, token), "sts", region)
    return signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)


class Clock:
    """The reuse clock and botocore's signing time, moved together."""

    def __init__(self):
        self.t = 0.0
        self.start = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc)

    def monotonic(self):
        return self.t

    def utc(self, remove_tzinfo=True):
        now = self.start + timedelta(seconds=self.t)
        return now.replace(tzinfo=None) if remove_tzinfo else now


class AWSIAMTokenTest(unittest.TestCase):
    def test_the_signed_request_is_what_tokenvendor_parses(self):
        endpoint = "https://sts.eu-west-1.amazonaws.com"
        for session_token in (None, SESSION_TOKEN):
            with self.subTest(session_token=session_token):
                doc = decode(tokenvendor.aws_iam_token("tokenvendor.prod", "eu-west-1", session=static(session_token))())
                self.assertEqual(set(doc), {"method", "headers", "body"})
                self.assertEqual(doc["method"], "POST")
                self.assertEqual(doc["body"], BODY)
                h = doc["headers"]
                self.assertTrue(all(isinstance(v, str) for v in h.values()))
                self.assertEqual(h["Host"], "sts.eu-west-1.amazonaws.com")
                self.assertEqual(h["X-Tokenvendor-Server-Id"], "tokenvendor.prod")
                self.assertEqual(h["Content-Type"], "application/x-www-form-urlencoded; charset=utf-8")
                self.assertRegex(h["X-Amz-Date"], r"^\d{8}T\d{6}Z$")
                self.assertFalse(HOP_BY_HOP & {k.lower() for k in h})
                scope, signed, signature = authorization(doc)
                self.assertEqual(scope, [AKID, h["X-Amz-Date"][:8], "eu-west-1", "sts", "aws4_request"])
                must = {"host", "x-amz-date", "x-tokenvendor-server-id"}
                if session_token:
                    self.assertEqual(h["X-Amz-Security-Token"], session_token)
                    must.add("x-amz-security-token")
                else:
                    self.assertNotIn("X-Amz-Security-Token", h)
                self.assertLessEqual(must, set(signed))
                self.assertEqual({k.lower() for k in h if k != "Authorization"}, set(signed),
                                 "a header is not signed, or a signed one is missing")
                if "content-length" in signed:
                    self.assertEqual(h["Content-Length"], str(len(BODY)))
                self.assertEqual(signature, recompute(doc, endpoint, "eu-west-1", token=session_token))
                self.assertNotEqual(signature, recompute(doc, endpoint, "eu-west-1", secret="another", token=session_token))
                self.assertNotEqual(signature, recompute(doc, endpoint, "us-east-1", token=session_token))

    def test_a_configured_endpoint_is_signed_as_written(self):
        for endpoint, host in (("http://127.0.0.1:4566", "127.0.0.1:4566"),
                               ("https://sts.example.com:443/sts/", "sts.example.com:443")):
            with self.subTest(endpoint=endpoint):
                doc = decode(tokenvendor.aws_iam_token("tv", "us-east-2", sts_endpoint=endpoint, session=static())())
                self.assertEqual(doc["headers"]["Host"], host)
                self.assertEqual(authorization(doc)[2], recompute(doc, endpoint, "us-east-2"))

    def test_the_default_endpoint_is_tokenvendors(self):
        for region, host in (("us-east-1", "sts.us-east-1.amazonaws.com"), ("cn-north-1", "sts.cn-north-1.amazonaws.com.cn")):
            doc = decode(tokenvendor.aws_iam_token("tv", region, session=static())())
            self.assertEqual(doc["headers"]["Host"], host)

    def test_fips_signs_for_the_fips_endpoint_or_refuses(self):
        for region, host in (("us-east-2", "sts-fips.us-east-2.amazonaws.com"), ("us-gov-west-1", "sts.us-gov-west-1.amazonaws.com")):
            doc = decode(tokenvendor.aws_iam_token("tv", region, session=static(), fips=True)())
            self.assertEqual(doc["headers"]["Host"], host)
        with self.assertRaisesRegex(ValueError, "no FIPS endpoint in eu-west-1"):
            tokenvendor.aws_iam_token("tv", "eu-west-1", session=static(), fips=True)
        with self.assertRaisesRegex(ValueError, "sts_endpoint and fips"):
            tokenvendor.aws_iam_token("tv", "us-east-1", sts_endpoint="https://sts.example.com", session=static(), fips=True)

    def test_a_signature_is_reused_for_reuse_seconds(self):
        clock = Clock()
        source = tokenvendor.aws_iam_token("tv", "us-east-1", session=static(SESSION_TOKEN), reuse=60, _now=clock.monotonic)
        with mock.patch.object(botocore.auth, "get_current_datetime", clock.utc):
            first = source()
            clock.t = 59.5
            self.assertEqual(source(), first)
            clock.t = 60
            second = source()
            self.assertNotEqual(second, first)
            self.assertEqual(decode(second)["headers"]["X-Amz-Date"], "20250304T050707Z")
            clock.t = 100
            self.assertEqual(source(), second)

    def test_a_new_access_key_is_signed_with_at_once(self):
        clock = Clock()
        session = static()
        source = tokenvendor.aws_iam_token("tv", "us-east-1", session=session, _now=clock.monotonic)
        with mock.patch.object(botocore.auth, "get_current_datetime", clock.utc):
            first = source()
            session.credentials = botocore.credentials.Credentials("ASIAEXAMPLE0000002", "other", "t2")
            second = source()
        self.assertNotEqual(second, first)
        doc = decode(second)
        self.assertEqual(authorization(doc)[0][0], "ASIAEXAMPLE0000002")
        self.assertEqual(doc["headers"]["X-Amz-Security-Token"], "t2")

    def test_refreshable_credentials_are_frozen_at_each_signing(self):
        keys = iter(f"ASIAREFRESHED{n:05d}" for n in range(100))

        def refresh():
            # Expiring inside botocore's mandatory window: refreshed on every use.
            expiry = datetime.now(timezone.utc) + timedelta(minutes=1)
            return {"access_key": next(keys), "secret_key": "s", "token": "t", "expiry_time": expiry.isoformat()}

        creds = botocore.credentials.RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")
        source = tokenvendor.aws_iam_token("tv", "us-east-1", session=Session(creds))
        scopes = [authorization(decode(source()))[0][0] for _ in range(2)]
        self.assertEqual(scopes, ["ASIAREFRESHED00001", "ASIAREFRESHED00002"])

    def test_threads_share_one_signature(self):
        source = tokenvendor.aws_iam_token("tv", "us-east-1", session=static())
        barrier = threading.Barrier(16)

        def call(_):
            barrier.wait()
            return source()

        def slow_add_auth(signer, request):
            time.sleep(0.05)  # so that, without the lock, the other threads sign too
            return original(signer, request)

        original = botocore.auth.SigV4Auth.add_auth
        with mock.patch.object(botocore.auth.SigV4Auth, "add_auth", autospec=True, side_effect=slow_add_auth) as add_auth:
            with ThreadPoolExecutor(16) as pool:
                values = set(pool.map(call, range(16)))
        self.assertEqual(len(values), 1)
        self.assertEqual(add_auth.call_count, 1)

    def test_reuse_must_be_under_the_life_of_a_signature(self):
        for reuse in (0, -1, 300, 301):
            with self.assertRaises(ValueError):
                tokenvendor.aws_iam_token("tv", "us-east-1", session=static(), reuse=reuse)
        for reuse in (0.5, 299):
            tokenvendor.aws_iam_token("tv", "us-east-1", session=static(), reuse=reuse)

    def test_bad_settings_are_refused_early(self):
        for kwargs in ({"server_id": ""}, {"server_id": "two words"}, {"region": ""},
                       {"sts_endpoint": "sts.amazonaws.com"}, {"sts_endpoint": "https://sts.amazonaws.com/?Action=x"},
                       {"sts_endpoint": "https://user@sts.amazonaws.com"}):
            with self.subTest(kwargs=kwargs):
                with self.assertRaises(ValueError):
                    tokenvendor.aws_iam_token(**{"server_id": "tv", "region": "us-east-1", "session": static(), **kwargs})

    def test_no_credentials_is_a_clear_error(self):
        source = tokenvendor.aws_iam_token("tv", "us-east-1", session=Session(None))
        with self.assertRaises(tokenvendor.TokenVendorError) as cm:
            source()
        self.assertEqual((cm.exception.status, cm.exception.code), (0, "no_aws_credentials"))

        class Failing:
            def get_frozen_credentials(self):
                raise botocore.exceptions.CredentialRetrievalError(provider="container-role", error_msg="unreachable")

        with self.assertRaises(tokenvendor.TokenVendorError) as cm:
            tokenvendor.aws_iam_token("tv", "us-east-1", session=Session(Failing()))()
        self.assertEqual(cm.exception.code, "no_aws_credentials")
        self.assertIn("container-role", cm.exception.message)


class ClientAuthorizationTest(unittest.TestCase):
    def setUp(self):
        self.fake = FakeVendor()
        self.addCleanup(self.fake.close)

    def fetch(self, token):
        tokenvendor.Client(self.fake.url, token=token).credentials("acme").get_frozen_credentials()
        return self.fake.requests[-1][0]

    def test_a_signed_request_is_sent_as_it_is_any_other_token_as_bearer(self):
        signed = tokenvendor.aws_iam_token("tv", "us-east-1", session=static(SESSION_TOKEN))
        sent = self.fetch(signed)
        self.assertEqual(sent, signed())
        self.assertTrue(sent.startswith("AWS-IAM eyJ"))
        self.assertEqual(self.fetch("AWS-IAM abc"), "AWS-IAM abc")
        self.assertEqual(self.fetch("x"), "Bearer x")
        self.assertEqual(self.fetch(lambda: "AWS-IAMx"), "Bearer AWS-IAMx")

    def test_a_401_makes_the_client_sign_anew(self):
        clock = Clock()
        source = tokenvendor.aws_iam_token("tv", "us-east-1", session=static(SESSION_TOKEN), _now=clock.monotonic)
        with mock.patch.object(botocore.auth, "get_current_datetime", clock.utc):
            first = source()
            self.fake.refuse_tokens.add(first)
            clock.t = 1  # well within reuse: only invalidate makes a new one
            tokenvendor.Client(self.fake.url, token=source).credentials("acme").get_frozen_credentials()
        sent = [authorization for authorization, _ in self.fake.requests]
        self.assertEqual(len(sent), 2)
        self.assertEqual(sent[0], first)
        self.assertNotEqual(sent[1], first)
        self.assertTrue(sent[1].startswith("AWS-IAM "))


if __name__ == "__main__":
    unittest.main()
