import asyncio
import contextvars
import os
import pickle
import threading
import time
import unittest
from unittest import mock
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import tokenvendor
from fake import FakeVendor


def access_key(session):
    return session.get_credentials().get_frozen_credentials().access_key


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.fake = FakeVendor()
        self.addCleanup(self.fake.close)
        self.client = tokenvendor.Client(self.fake.url, token="the-token", profile="objects")

    def test_sessions_of_one_tenant_share_one_credentials_object_fetched_on_first_use(self):
        a1, a2 = self.client.session("acme"), self.client.session("acme")
        g = self.client.session("globex")
        self.assertEqual(self.fake.requests, [], "a session was fetched before it was used")
        self.assertIs(a1.get_credentials(), a2.get_credentials())
        self.assertIsNot(a1.get_credentials(), g.get_credentials())
        self.assertTrue(access_key(a1).startswith("ASIA-acme-"))
        self.assertEqual(access_key(a1), access_key(a2))
        self.assertTrue(access_key(g).startswith("ASIA-globex-"))
        self.assertEqual(len(self.fake.requests), 2)
        auth, body = self.fake.requests[0]
        self.assertEqual(auth, "Bearer the-token")
        self.assertEqual(body, {"profile": "objects", "tenant_id": "acme"})

    def test_own_tenant_sends_no_tenant_id(self):
        access_key(self.client.session())
        self.assertEqual(self.fake.requests[0][1], {"profile": "objects"})

    def test_short_credentials_are_not_fetched_on_every_call(self):
        self.fake.life = timedelta(minutes=4)  # inside botocore's own 15/10-minute windows
        creds = self.client.credentials("acme")
        for _ in range(20):
            creds.get_frozen_credentials()
        self.assertEqual(len(self.fake.requests), 1)

    def refresh_once(self, wait):
        """Credentials living 8 s (7 to 8 once the answer's whole seconds
        are taken), used by 20 threads at once after wait: exactly one
        refresh, and the new key is used afterwards."""
        self.fake.life = timedelta(seconds=8)
        creds = self.client.credentials("acme")
        first = creds.get_frozen_credentials().access_key
        time.sleep(wait)
        barrier = threading.Barrier(20)

        def use():
            barrier.wait()
            return creds.get_frozen_credentials().access_key

        with ThreadPoolExecutor(20) as pool:
            list(pool.map(lambda _: use(), range(20)))
        self.assertEqual(len(self.fake.requests), 2, "not exactly one refresh for 20 threads")
        self.assertNotEqual(creds.get_frozen_credentials().access_key, first)

    def test_refresh_happens_once_in_the_advisory_window(self):
        self.refresh_once(4.6)  # over half the life gone: one thread refreshes, the others go on

    def test_refresh_happens_once_in_the_mandatory_window(self):
        self.refresh_once(6.3)  # under a quarter left: every thread waits for the one refresh

    def test_a_failed_refresh_keeps_valid_credentials_and_backs_off(self):
        self.fake.life = timedelta(seconds=8)
        creds = self.client.credentials("acme")
        first = creds.get_frozen_credentials().access_key
        time.sleep(4.6)
        self.fake.status = 503
        for _ in range(10):
            self.assertEqual(creds.get_frozen_credentials().access_key, first)
        self.assertEqual(len(self.fake.requests), 2, "a failed refresh was retried at once")

    def test_an_answer_for_another_tenant_is_refused(self):
        caller = ["acme"]
        client = tokenvendor.Client(self.fake.url, token=lambda: caller[0])
        self.fake.tenant_from_token = True
        self.assertEqual(access_key(client.session()), "ASIA-acme-1")
        caller[0] = "globex"
        with self.assertRaises(tokenvendor.TokenVendorError) as cm:
            client.credentials("initech").get_frozen_credentials()
        self.assertEqual(cm.exception.code, "tenant_mismatch")

    def test_the_environment_is_never_a_fallback(self):
        self.fake.status = 403
        with mock.patch.dict(os.environ, {"AWS_ACCESS_KEY_ID": "AKIAENVIRONMENT", "AWS_SECRET_ACCESS_KEY": "from-env"}):
            with self.assertRaises(tokenvendor.TokenVendorError):
                self.client.session("acme").get_credentials().get_frozen_credentials()

    def test_no_redirect_and_no_proxy_on_loopback(self):
        with mock.patch.dict(os.environ, {"HTTP_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}):
            client = tokenvendor.Client(self.fake.url, token="t")
            self.assertTrue(access_key(client.session("acme")).startswith("ASIA-acme-"), "the proxy was used")
        self.fake.redirect_to = "http://127.0.0.1:9/credentials"
        with self.assertRaises(tokenvendor.TokenVendorError) as cm:
            access_key(self.client.session("globex"))
        self.assertEqual(cm.exception.status, 307)

    def test_error_pickles_and_carries_retry_after(self):
        self.fake.status = 503
        with self.assertRaises(tokenvendor.TokenVendorError) as cm:
            access_key(self.client.session("acme"))
        err = pickle.loads(pickle.dumps(cm.exception))
        self.assertEqual((err.status, err.code, err.retry_after), (503, "upstream_unavailable", 5))

    def test_refusal_carries_code_and_message_never_the_token(self):
        for status, code in ((403, "forbidden"), (503, "upstream_unavailable")):
            self.fake.status = status
            with self.assertRaises(tokenvendor.TokenVendorError) as cm:
                self.client.session("acme" + str(status)).get_credentials().get_frozen_credentials()
            err = cm.exception
            self.assertEqual((err.status, err.code, err.message), (status, code, "refused by the fake"))
            self.assertNotIn("the-token", str(err))
            self.assertNotIn("the-token", repr(err.args))

    def test_token_callable_is_called_again_after_a_401(self):
        tokens = iter(["stale-token", "fresh-token"])
        asked = []

        def token():
            asked.append(next(tokens))
            return asked[-1]

        self.fake.refuse_tokens.add("stale-token")
        client = tokenvendor.Client(self.fake.url, token=token)
        self.assertTrue(access_key(client.session("acme")).startswith("ASIA-acme-"))
        self.assertEqual(asked, ["stale-token", "fresh-token"])
        self.assertEqual([a for a, _ in self.fake.requests], ["Bearer stale-token", "Bearer fresh-token"])

    def test_a_static_token_refused_is_not_retried(self):
        self.fake.refuse_tokens.add("the-token")
        with self.assertRaises(tokenvendor.TokenVendorError) as cm:
            access_key(self.client.session("acme"))
        self.assertEqual(cm.exception.code, "unauthenticated")
        self.assertEqual(len(self.fake.requests), 1)

    def test_url_must_be_https_beyond_loopback(self):
        for url in ("http://tokenvendor.example", "tokenvendor", "ftp://127.0.0.1"):
            with self.assertRaises(ValueError):
                tokenvendor.Client(url, token="t")
        tokenvendor.Client("https://tokenvendor.example", token="t")


class ScopeTest(unittest.TestCase):
    def setUp(self):
        self.fake = FakeVendor()
        self.addCleanup(self.fake.close)
        self.client = tokenvendor.Client(self.fake.url, token="t")

    def test_outside_a_scope_there_is_no_session(self):
        with self.assertRaises(tokenvendor.NoTenantError):
            tokenvendor.current_session()

    def test_scopes_nest_and_leave_nothing_behind(self):
        with tokenvendor.tenant(self.client, "acme") as outer:
            self.assertIs(tokenvendor.current_session(), outer)
            with tokenvendor.tenant(self.client, "globex"):
                self.assertTrue(access_key(tokenvendor.current_session()).startswith("ASIA-globex-"))
            self.assertIs(tokenvendor.current_session(), outer)
        with self.assertRaises(tokenvendor.NoTenantError):
            tokenvendor.current_session()

    def test_scope_is_left_when_the_code_inside_raises(self):
        with self.assertRaises(RuntimeError):
            with tokenvendor.tenant(self.client, "acme"):
                raise RuntimeError("boom")
        with self.assertRaises(tokenvendor.NoTenantError):
            tokenvendor.current_session()

    def test_one_scope_object_entered_by_many_threads(self):
        acme = tokenvendor.tenant(self.client, "acme")  # at module level, say
        errors = []
        barrier = threading.Barrier(8)

        def job():
            try:
                barrier.wait()
                with acme:
                    access_key(tokenvendor.current_session())
                tokenvendor.current_session()
                errors.append("a tenant stayed bound after the scope")
            except tokenvendor.NoTenantError:
                pass
            except Exception as err:  # noqa: BLE001 - any other is the bug
                errors.append(repr(err))

        threads = [threading.Thread(target=job) for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        self.assertEqual(errors, [])

    def test_bind_and_unbind(self):
        mark = tokenvendor.bind(self.client, "acme")
        self.assertTrue(access_key(tokenvendor.current_session()).startswith("ASIA-acme-"))
        tokenvendor.unbind(mark)
        with self.assertRaises(tokenvendor.NoTenantError):
            tokenvendor.current_session()

    def test_decorator_sync_and_async(self):
        @tokenvendor.tenant(self.client, "acme")
        def sync_handler():
            return access_key(tokenvendor.current_session())

        @tokenvendor.tenant(self.client, "globex")
        async def async_handler():
            await asyncio.sleep(0)
            return access_key(tokenvendor.current_session())

        self.assertTrue(sync_handler().startswith("ASIA-acme-"))
        self.assertTrue(asyncio.run(async_handler()).startswith("ASIA-globex-"))
        with self.assertRaises(tokenvendor.NoTenantError):
            tokenvendor.current_session()

    def test_threads_see_their_own_tenant_and_new_threads_start_empty(self):
        tenants = [f"t{i}" for i in range(8)]
        seen = {}

        def work(tenant):
            with tokenvendor.tenant(self.client, tenant):
                for _ in range(20):
                    seen.setdefault(tenant, set()).add(access_key(tokenvendor.current_session()))

        threads = [threading.Thread(target=work, args=(t,)) for t in tenants]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        for tenant in tenants:
            self.assertEqual(len(seen[tenant]), 1)
            self.assertTrue(next(iter(seen[tenant])).startswith(f"ASIA-{tenant}-"))

        with tokenvendor.tenant(self.client, "acme"):
            with ThreadPoolExecutor(1) as pool:
                with self.assertRaises(tokenvendor.NoTenantError):
                    pool.submit(tokenvendor.current_session).result()
                ctx = contextvars.copy_context()
                got = pool.submit(ctx.run, lambda: access_key(tokenvendor.current_session())).result()
        self.assertTrue(got.startswith("ASIA-acme-"))

    def test_interleaved_asyncio_tasks_see_their_own_tenant(self):
        async def task(tenant):
            keys = set()
            async with tokenvendor.tenant(self.client, tenant):
                for _ in range(5):
                    await asyncio.sleep(0)  # let every other task run in between
                    keys.add(access_key(tokenvendor.current_session()))
            return tenant, keys

        async def main():
            return await asyncio.gather(*(task(f"a{i}") for i in range(10)))

        for tenant, keys in asyncio.run(main()):
            self.assertEqual(len(keys), 1)
            self.assertTrue(next(iter(keys)).startswith(f"ASIA-{tenant}-"), (tenant, keys))


if __name__ == "__main__":
    unittest.main()
