"""End-to-end scenarios against the real tokenvendor and MinIO.

Not collected by `unittest discover` (no test_ prefix): e2e/tenantclients_test.go
(TestPythonClient) starts tokenvendor and MinIO, then runs this module with their addresses in
the environment:

  TV_URL            tokenvendor's base URL
  TV_TOKEN_WORKER   a token with the override scope (any tenant)
  TV_TOKEN_ACME     a token of tenant acme
  MINIO_URL, BUCKET where the tenants' objects live (tenant id as prefix)
"""

import asyncio
import contextvars
import json
import os
import threading
import unittest
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import botocore.config
import botocore.exceptions

import tokenvendor

URL = os.environ["TV_URL"]
WORKER = os.environ["TV_TOKEN_WORKER"]
ACME = os.environ["TV_TOKEN_ACME"]
MINIO = os.environ["MINIO_URL"]
BUCKET = os.environ["BUCKET"]
TENANTS = ["acme", "globex", "initech"]


def s3():
    """An S3 client of the current tenant's session, for MinIO."""
    return tokenvendor.current_session().client(
        "s3", endpoint_url=MINIO, region_name="us-east-1",
        config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def vended_key(tenant):
    """The access key tokenvendor hands the worker for tenant, asked
    directly: what every session of that tenant must be using."""
    req = urllib.request.Request(URL + "/credentials", data=json.dumps({"tenant_id": tenant}).encode(), method="POST",
                                 headers={"Authorization": "Bearer " + WORKER, "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as res:
        return json.load(res)["AccessKeyId"]


def denied(call):
    try:
        call()
    except botocore.exceptions.ClientError as err:
        return err.response["Error"]["Code"] == "AccessDenied"
    return False


def current_key():
    return tokenvendor.current_session().get_credentials().get_frozen_credentials().access_key


class Scenarios(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = tokenvendor.Client(URL, token=WORKER)
        cls.expected = {t: vended_key(t) for t in TENANTS}
        assert len(set(cls.expected.values())) == len(TENANTS), cls.expected

    def check_tenant(self, tenant, other):
        """Inside tenant's scope: its own prefix works, other's is denied,
        and the credentials are tenant's."""
        self.assertEqual(current_key(), self.expected[tenant])
        key = f"{tenant}/py-{uuid.uuid4().hex}"
        s3().put_object(Bucket=BUCKET, Key=key, Body=tenant.encode())
        self.assertEqual(s3().get_object(Bucket=BUCKET, Key=key)["Body"].read(), tenant.encode())
        self.assertTrue(denied(lambda: s3().put_object(Bucket=BUCKET, Key=f"{other}/py-intruder", Body=b"x")),
                        f"{tenant} wrote into {other}'s prefix")
        self.assertEqual(current_key(), self.expected[tenant])

    def test_threads_never_see_each_others_credentials(self):
        def job(i):
            tenant, other = TENANTS[i % 3], TENANTS[(i + 1) % 3]
            with tokenvendor.tenant(self.client, tenant):
                for _ in range(3):
                    self.check_tenant(tenant, other)
            return tenant

        with ThreadPoolExecutor(9) as pool:
            done = list(pool.map(job, range(18)))
        self.assertEqual(sorted(set(done)), sorted(TENANTS))

    def test_interleaved_asyncio_tasks_never_see_each_others_credentials(self):
        seen = []

        async def task(i):
            tenant = TENANTS[i % 3]
            async with tokenvendor.tenant(self.client, tenant):
                for _ in range(4):
                    await asyncio.sleep(0.01)  # every other task runs in between
                    key = current_key()
                    seen.append((tenant, key))
                    self.assertEqual(key, self.expected[tenant], f"task {i} of {tenant}")
                # A blocking S3 call off the loop, in this task's context.
                loop = asyncio.get_running_loop()
                ctx = contextvars.copy_context()
                await loop.run_in_executor(None, ctx.run, self.check_tenant, tenant, TENANTS[(i + 1) % 3])

        async def main():
            await asyncio.gather(*(task(i) for i in range(12)))

        asyncio.run(main())
        self.assertEqual(len(seen), 48)

    def test_worker_serves_several_tenants_in_one_process(self):
        jobs = [("acme", "globex"), ("globex", "initech"), ("initech", "acme"), ("acme", "initech")]
        for tenant, other in jobs:
            with tokenvendor.tenant(self.client, tenant):
                self.check_tenant(tenant, other)
        with self.assertRaises(tokenvendor.NoTenantError):
            tokenvendor.current_session()

    def test_current_session_outside_a_scope_raises(self):
        with self.assertRaises(tokenvendor.NoTenantError):
            tokenvendor.current_session()
        box = []
        with tokenvendor.tenant(self.client, "acme"):
            t = threading.Thread(target=lambda: box.append(self._session_or_error()))
            t.start()
            t.join()
        self.assertIsInstance(box[0], tokenvendor.NoTenantError, "a new thread inherited the scope")

    @staticmethod
    def _session_or_error():
        try:
            return tokenvendor.current_session()
        except tokenvendor.NoTenantError as err:
            return err

    def test_token_callable_is_called_again_after_a_401(self):
        tokens = iter(["not-a-token", ACME])
        asked = []

        def token():
            asked.append(next(tokens))
            return asked[-1]

        client = tokenvendor.Client(URL, token=token)
        with tokenvendor.tenant(client):
            self.check_tenant("acme", "globex")
        self.assertEqual(asked, ["not-a-token", ACME])

    def test_refusal_carries_the_code_and_not_the_token(self):
        client = tokenvendor.Client(URL, token=ACME)
        with self.assertRaises(tokenvendor.TokenVendorError) as cm:
            client.session("globex").get_credentials().get_frozen_credentials()
        self.assertEqual((cm.exception.status, cm.exception.code), (403, "forbidden"))
        self.assertNotIn(ACME, str(cm.exception))


if __name__ == "__main__":
    unittest.main()
