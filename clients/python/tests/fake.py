"""A fake tokenvendor for the unit tests: POST /credentials answers with
credentials naming the tenant and the request number."""

import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeVendor:
    def __init__(self, life=timedelta(hours=1)):
        self.life = life
        self.requests = []  # (authorization, body)
        self.headers = []  # every request's headers, in the order of requests
        self.refuse_tokens = set()  # tokens answered with 401
        self.status = None  # answer every request with this error status
        self.tenant_from_token = False  # answer for the tenant the token names
        self.answer_tenant = None  # answer for this tenant, whatever was asked
        self.redirect_to = None
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                auth = self.headers.get("Authorization", "")
                with fake._lock:
                    fake.requests.append((auth, body))
                    fake.headers.append(dict(self.headers.items()))
                    n = len(fake.requests)
                if fake.redirect_to:
                    self.send_response(307)
                    self.send_header("Location", fake.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fake.status or auth.removeprefix("Bearer ") in fake.refuse_tokens:
                    status = fake.status or 401
                    code = {400: "invalid_tenant", 401: "unauthenticated", 403: "forbidden", 503: "upstream_unavailable"}[status]
                    return self._answer(status, {"code": code, "message": "refused by the fake"},
                                        {"Retry-After": "5"} if status == 503 else {})
                tenant = body.get("tenant_id", "own")
                if fake.tenant_from_token:
                    tenant = auth.removeprefix("Bearer ")
                if fake.answer_tenant is not None:
                    tenant = fake.answer_tenant
                expires = datetime.now(timezone.utc) + fake.life
                self._answer(200, {
                    "Version": 1, "AccessKeyId": f"ASIA-{tenant}-{n}", "SecretAccessKey": f"secret-{n}",
                    "SessionToken": f"token-{n}", "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "TenantId": tenant, "Profile": "objects",
                })

            def _answer(self, status, doc, headers=None):
                b = json.dumps(doc).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(b)))
                self.end_headers()
                self.wfile.write(b)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()
