import base64
import io
import json
import logging
import os
import threading
import unittest
from datetime import datetime, timedelta, timezone
from unittest import mock

import botocore.config

import test_awsiam as awsiam
import tokenvendor
from fake import FakeVendor

SERVER_ID = "tokenvendor.prod"


class Context:
    """A Lambda context as far as LambdaTenant reads one."""

    def __init__(self, tenant_id):
        self.tenant_id = tenant_id


class Clock:
    """botocore's clock for the credentials, moved by the test."""

    def __init__(self):
        self.offset = timedelta()

    def now(self):
        return datetime.now(timezone.utc) + self.offset


def jwt(claims):
    """An unsigned JWT (the fake verifies nothing; LambdaTenant only reads it)."""

    def part(doc):
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def user(tenant, n=0):
    return jwt({"sub": f"user-{n}", "tenant_id": tenant, "exp": 2000000000 + n})


class LambdaTenantTest(unittest.TestCase):
    def setUp(self):
        self.fake = FakeVendor()
        self.addCleanup(self.fake.close)
        self.clock = Clock()
        self.signing = awsiam.static(awsiam.SESSION_TOKEN)

    def tenant(self, **kwargs):
        return tokenvendor.LambdaTenant(self.fake.url, SERVER_ID, "us-east-1", session=self.signing,
                                        _time_fetcher=self.clock.now, **kwargs)

    def access_key(self, session):
        return session.get_credentials().get_frozen_credentials().access_key

    def test_two_proofs_travel_in_one_request(self):
        for profile, body in ((None, {"tenant_id": "acme"}), ("objects", {"profile": "objects", "tenant_id": "acme"})):
            with self.subTest(profile=profile):
                self.fake.requests.clear()
                self.fake.headers.clear()
                token = user("acme")
                session = self.tenant(profile=profile).session(Context("acme"), "Bearer " + token)
                self.assertEqual(self.access_key(session), "ASIA-acme-1")
                self.assertEqual(len(self.fake.requests), 1)
                authorization, sent = self.fake.requests[0]
                self.assertEqual(sent, body)
                headers = self.fake.headers[0]
                self.assertEqual(headers["X-Tokenvendor-Tenant-Token"], token, "the token, without Bearer")
                self.assertEqual(headers["Content-Type"], "application/json")
                doc = awsiam.decode(authorization)
                self.assertEqual(doc["body"], awsiam.BODY)
                self.assertEqual(doc["headers"]["X-Tokenvendor-Server-Id"], SERVER_ID)
                self.assertEqual(doc["headers"]["X-Amz-Security-Token"], awsiam.SESSION_TOKEN)
                self.assertEqual(awsiam.authorization(doc)[0][0], awsiam.AKID, "not signed with the function's own credentials")

    def test_one_request_serves_every_invoke_until_refresh_which_takes_the_newest_token(self):
        lt = self.tenant()
        first = lt.session(Context("acme"), user("acme", 0))
        keys = {self.access_key(first)}
        for n in range(1, 11):
            session = lt.session(Context("acme"), user("acme", n))
            self.assertIs(session, first, "a session per invoke")
            keys.add(self.access_key(session))
            keys.add(lt.credentials(Context("acme"), user("acme", n)).get_frozen_credentials().access_key)
        self.assertEqual(keys, {"ASIA-acme-1"})
        self.assertEqual(len(self.fake.requests), 1, "more than one request for 10 invokes")
        self.assertEqual(self.fake.headers[0]["X-Tokenvendor-Tenant-Token"], user("acme", 0))

        newest = user("acme", 11)
        lt.session(Context("acme"), newest)
        self.clock.offset = timedelta(minutes=55)  # 5 minutes left of 1 hour: a refresh every use waits for
        self.assertEqual(self.access_key(first), "ASIA-acme-2")
        self.assertEqual(len(self.fake.requests), 2)
        self.assertEqual(self.fake.headers[1]["X-Tokenvendor-Tenant-Token"], newest)
        self.assertEqual(self.fake.requests[1][1], {"tenant_id": "acme"})
        self.assertEqual(lt.tenant_id, "acme")

    def test_an_invoke_without_a_tenant_id_is_refused(self):
        lt = self.tenant()
        for context, token in ((Context(None), user("acme")), (Context(""), user("acme")), (object(), user("acme")),
                               (Context(42), user("acme")), (Context(""), None)):
            with self.subTest(context=vars(context) if hasattr(context, "__dict__") else context, token=bool(token)):
                with self.assertRaises(tokenvendor.TenantIsolationError) as cm:
                    lt.session(context, token)
                self.assertIn("tenant isolation mode", str(cm.exception))
        self.assertEqual(self.fake.requests, [])
        self.assertIsNone(lt.tenant_id, "an invoke without a tenant pinned one")
        # No tenant is not a second tenant: the process may still serve its first.
        self.assertEqual(self.access_key(lt.session(Context("acme"), user("acme"))), "ASIA-acme-1")

    def test_a_second_tenant_trips_the_wire_for_the_rest_of_the_process(self):
        lt = self.tenant()
        session = lt.session(Context("acme"), user("acme"))
        self.assertEqual(self.access_key(session), "ASIA-acme-1")
        s3 = session.client("s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
                            config=botocore.config.Config(retries={"max_attempts": 1}))

        with self.assertRaises(tokenvendor.TenantIsolationError) as cm:
            lt.session(Context("globex"), user("globex"))
        message = str(cm.exception)
        self.assertIn("'acme'", message)
        self.assertIn("'globex'", message)
        self.assertNotIn(user("globex"), message)

        # Still tripped, for its own tenant too, however it is asked; and
        # what was handed out before stops working.
        for call in (lambda: lt.session(Context("acme"), user("acme")),
                     lambda: lt.credentials(Context("acme"), user("acme")),
                     lambda: lt.session(Context("globex"), user("globex")),
                     lambda: lt.session(Context(""), user("acme")),
                     lambda: lt.session(Context("acme"), None),
                     lambda: session.get_credentials().get_frozen_credentials(),
                     lambda: session.get_credentials().access_key,
                     lambda: s3.list_buckets()):
            with self.assertRaises(tokenvendor.TenantIsolationError):
                call()
        self.assertEqual(len(self.fake.requests), 1)
        self.assertEqual([body for _, body in self.fake.requests], [{"tenant_id": "acme"}])

    def test_the_wire_trips_before_any_request_and_in_any_thread(self):
        lt = self.tenant()
        lt.session(Context("acme"), user("acme"))  # pinned, nothing fetched yet
        errors = []

        def invoke():
            try:
                lt.session(Context("globex"), user("globex"))
            except tokenvendor.TenantIsolationError as err:
                errors.append(err)

        thread = threading.Thread(target=invoke)
        thread.start()
        thread.join()
        self.assertEqual(len(errors), 1)
        with self.assertRaises(tokenvendor.TenantIsolationError):
            lt.session(Context("acme"), user("acme")).get_credentials().get_frozen_credentials()
        self.assertEqual(self.fake.requests, [], "a request after the wire tripped")

    def test_an_answer_for_another_tenant_is_refused(self):
        lt = self.tenant()
        session = lt.session(Context("acme"), user("acme"))
        for answered in ("globex", ""):
            with self.subTest(answered=answered):
                self.fake.answer_tenant = answered
                with self.assertRaises(tokenvendor.TokenVendorError) as cm:
                    self.access_key(session)
                self.assertEqual((cm.exception.status, cm.exception.code), (200, "tenant_mismatch"))
        self.fake.answer_tenant = None
        self.assertTrue(self.access_key(session).startswith("ASIA-acme-"))

    def test_a_token_for_another_tenant_is_refused_here_too_even_with_credentials_cached(self):
        lt = self.tenant()
        good = user("acme", 1)
        self.access_key(lt.session(Context("acme"), good))
        for token in (user("globex"), jwt({"sub": "u"}), jwt({"tenant_id": ""}), jwt({"tenant_id": ["acme"]})):
            with self.assertRaises(tokenvendor.TokenVendorError) as cm:
                lt.session(Context("acme"), token)
            self.assertEqual(cm.exception.code, "tenant_mismatch")
            self.assertNotIn(token, str(cm.exception))
        self.assertEqual(len(self.fake.requests), 1)
        # Refused tokens are not kept for the next request to tokenvendor,
        # and do not trip the wire: the environment served no other tenant.
        self.clock.offset = timedelta(minutes=55)
        self.access_key(lt.session(Context("acme"), good))
        self.assertEqual(self.fake.headers[-1]["X-Tokenvendor-Tenant-Token"], good)

    def test_the_tenant_claim_is_read_as_tokenvendor_reads_it(self):
        token = jwt({"sub": "u", "kubernetes.io": {"namespace": "acme"}})
        lt = self.tenant(tenant_claim="kubernetes.io.namespace")
        self.assertEqual(self.access_key(lt.session(Context("acme"), token)), "ASIA-acme-1")
        with self.assertRaises(tokenvendor.TokenVendorError):
            self.tenant().session(Context("acme"), token)  # no tenant_id claim

    def test_no_token_or_not_a_jwt_is_refused_before_any_request(self):
        lt = self.tenant()
        for token, code in ((None, "no_tenant_token"), ("", "no_tenant_token"), ("Bearer ", "no_tenant_token"),
                            ("two words", "invalid_tenant_token"), ("a\r\nX-Injected: 1", "invalid_tenant_token"),
                            ("opaque-token", "invalid_tenant_token"), ("a.b.c", "invalid_tenant_token")):
            with self.subTest(token=token):
                with self.assertRaises(tokenvendor.TokenVendorError) as cm:
                    lt.session(Context("acme"), token)
                self.assertEqual((cm.exception.status, cm.exception.code), (0, code))
        self.assertEqual(self.fake.requests, [])

    def test_refusals_are_tokenvendor_errors_without_a_secret(self):
        token = user("acme")
        for status, code, requests in ((400, "invalid_tenant", 1), (401, "unauthenticated", 2), (403, "forbidden", 1),
                                       (503, "upstream_unavailable", 1)):
            with self.subTest(status=status):
                self.fake.status = status
                self.fake.requests.clear()
                with self.assertRaises(tokenvendor.TokenVendorError) as cm:
                    self.access_key(self.tenant().session(Context("acme"), token))
                err = cm.exception
                self.assertEqual((err.status, err.code, err.message), (status, code, "refused by the fake"))
                # A 401 is asked again once, with a new signature.
                self.assertEqual(len(self.fake.requests), requests)
                for secret in (token, self.fake.requests[0][0], awsiam.SECRET, awsiam.SESSION_TOKEN):
                    self.assertNotIn(secret, str(err))
                    self.assertNotIn(secret, repr(err.args))

    def test_nothing_secret_is_logged(self):
        out = io.StringIO()
        handler = logging.StreamHandler(out)
        handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        root = logging.getLogger()
        level = root.level
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        self.addCleanup(root.removeHandler, handler)
        self.addCleanup(root.setLevel, level)

        token = user("acme")
        lt = self.tenant()
        session = lt.session(Context("acme"), token)
        self.access_key(session)
        self.clock.offset = timedelta(minutes=47)  # 13 minutes left: a refresh one use tries, which fails
        self.fake.status = 503
        self.assertEqual(self.access_key(session), "ASIA-acme-1")
        for call in (lambda: lt.session(Context("globex"), user("globex")), lambda: self.access_key(session)):
            with self.assertRaises(tokenvendor.TenantIsolationError):
                call()
        logged = out.getvalue()
        self.assertIn("Refreshing temporary credentials failed", logged, "the failed refresh was not logged at all")
        for secret in (token, user("globex"), self.fake.requests[0][0], "secret-1", "token-1",
                       awsiam.SECRET, awsiam.SESSION_TOKEN):
            self.assertNotIn(secret, logged)

    def test_the_environment_is_never_a_fallback(self):
        self.fake.status = 403
        with mock.patch.dict(os.environ, {"AWS_ACCESS_KEY_ID": "AKIAENVIRONMENT", "AWS_SECRET_ACCESS_KEY": "from-env"}):
            with self.assertRaises(tokenvendor.TokenVendorError):
                self.access_key(self.tenant().session(Context("acme"), user("acme")))

    def test_bad_settings_are_refused_early(self):
        for kwargs in ({"tenant_claim": ""}, {"tenant_claim": None}, {"url": "http://tokenvendor.example"},
                       {"server_id": "two words"}, {"region": ""}):
            with self.subTest(kwargs=kwargs):
                args = {"url": self.fake.url, "server_id": SERVER_ID, "region": "us-east-1", "session": self.signing, **kwargs}
                with self.assertRaises(ValueError):
                    tokenvendor.LambdaTenant(**args)


class EventTokenTest(unittest.TestCase):
    def test_the_authorization_header_without_bearer(self):
        for event, want in (
            ({"headers": {"Authorization": "Bearer eyJ.a.b"}}, "eyJ.a.b"),
            ({"headers": {"authorization": "bearer eyJ.a.b"}}, "eyJ.a.b"),
            ({"headers": {"AUTHORIZATION": "eyJ.a.b"}}, "eyJ.a.b"),  # as a Cognito authorizer takes it
            ({"headers": {"X-Other": "x"}}, None),
            ({"headers": None}, None),  # API Gateway's test console sends none
            ({}, None),
            (None, None),
        ):
            with self.subTest(event=event):
                self.assertEqual(tokenvendor.event_token(event), want)


if __name__ == "__main__":
    unittest.main()
