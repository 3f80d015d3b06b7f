"""End-to-end: a caller with an AWS identity and no JWT, through
tokenvendor.aws_iam_token, against the real tokenvendor, moto_server
checking signatures, and MinIO.

Not collected by `unittest discover` (no test_ prefix): e2e/awsiam_test.go
(TestAWSIAMCallersWithoutAnIdentityProvider) runs this module with:

  TV_URL                    tokenvendor's base URL (auth.aws_iam only)
  TV_SERVER_ID, TV_STS_URL  its auth.aws_iam server_id and sts_endpoint
  ROLE_KEY, ROLE_SECRET, ROLE_TOKEN   credentials of a session of the role mapped to acme
  MINIO_URL, BUCKET         where the tenants' objects live (tenant id as prefix)
"""

import os
import unittest
import uuid

import boto3
import botocore.config
import botocore.exceptions

import tokenvendor


class AWSIAMCaller(unittest.TestCase):
    def test_a_role_session_gets_its_tenants_credentials_only(self):
        role = boto3.Session(aws_access_key_id=os.environ["ROLE_KEY"], aws_secret_access_key=os.environ["ROLE_SECRET"],
                             aws_session_token=os.environ["ROLE_TOKEN"], region_name="us-east-1")
        token = tokenvendor.aws_iam_token(server_id=os.environ["TV_SERVER_ID"], region="us-east-1",
                                          sts_endpoint=os.environ["TV_STS_URL"], session=role)
        client = tokenvendor.Client(os.environ["TV_URL"], token=token)
        s3 = client.session().client(
            "s3", endpoint_url=os.environ["MINIO_URL"], region_name="us-east-1",
            config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
        # The S3 calls are made with vended credentials, not the role's own.
        self.assertNotEqual(client.session().get_credentials().get_frozen_credentials().access_key, os.environ["ROLE_KEY"])
        bucket, key = os.environ["BUCKET"], f"acme/py-iam-{uuid.uuid4().hex}"
        s3.put_object(Bucket=bucket, Key=key, Body=b"from a Lambda")
        self.assertEqual(s3.get_object(Bucket=bucket, Key=key)["Body"].read(), b"from a Lambda")
        with self.assertRaises(botocore.exceptions.ClientError) as err:
            s3.put_object(Bucket=bucket, Key="globex/py-iam", Body=b"x")
        self.assertEqual(err.exception.response["Error"]["Code"], "AccessDenied")
        with self.assertRaises(tokenvendor.TokenVendorError) as err:
            client.session("globex").get_credentials().get_frozen_credentials()
        self.assertEqual(err.exception.status, 403)


if __name__ == "__main__":
    unittest.main()
