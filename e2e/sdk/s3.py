"""boto3 and botocore, unmodified, as an application uses them
(e2e/sdkmatrix_test.go).

    python3 s3.py credentials
    python3 s3.py s3 ENDPOINT BUCKET OWN_KEY OTHER_KEY

Credentials come from botocore's default chain, which reads the
environment (the container provider: AWS_CONTAINER_CREDENTIALS_FULL_URI
with AWS_CONTAINER_AUTHORIZATION_TOKEN or _FILE; or a profile's
credential_process).

"credentials" resolves the credentials and nothing else; "s3" then writes
OWN_KEY, reads it back, reads OTHER_KEY and writes OTHER_KEY. The answer is
one JSON line on stdout (e2e/sdkmatrix_test.go's sdkResult): the
packages' versions, the credentials' source, the error that kept botocore
from credentials, and each S3 call's error code. No credential is printed.
"""

import json
import sys

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import ClientError


def main(argv):
    if len(argv) < 1 or argv[0] not in ("credentials", "s3") or (argv[0] == "s3" and len(argv) != 5):
        sys.stderr.write("usage: python3 s3.py credentials | s3 ENDPOINT BUCKET OWN_KEY OTHER_KEY\n")
        return 2
    out = {
        "versions": {"boto3": boto3.__version__, "botocore": botocore.__version__},
        "source": "",
        "error": "",
        "ops": [],
    }
    session = boto3.session.Session(region_name="us-east-1")
    try:
        creds = session.get_credentials()
        if creds is None:
            raise RuntimeError("no credentials found")
        creds.get_frozen_credentials()
        out["source"] = creds.method
    except Exception as err:  # every way the chain fails is an answer
        out["error"] = "%s: %s" % (type(err).__name__, err)
        print(json.dumps(out))
        return 0

    if argv[0] == "s3":
        endpoint, bucket, own, other = argv[1:]
        s3 = session.client("s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}))
        body = b"written by boto3"

        def get_own():
            got = s3.get_object(Bucket=bucket, Key=own)["Body"].read()
            if got != body:
                raise ValueError("read back other content")

        call(out, "put", own, lambda: s3.put_object(Bucket=bucket, Key=own, Body=body))
        call(out, "get", own, get_own)
        call(out, "get", other, lambda: s3.get_object(Bucket=bucket, Key=other)["Body"].read())
        call(out, "put", other, lambda: s3.put_object(Bucket=bucket, Key=other, Body=b"overwritten"))
    print(json.dumps(out))
    return 0


def call(out, op, key, fn):
    try:
        fn()
        out["ops"].append({"op": op, "key": key, "code": ""})
    except ClientError as err:
        error = err.response.get("Error", {})
        out["ops"].append({"op": op, "key": key, "code": error.get("Code", "Error"), "message": error.get("Message", "")})
    except ValueError as err:
        out["ops"].append({"op": op, "key": key, "code": "Mismatch", "message": str(err)})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
