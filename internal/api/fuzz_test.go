package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzCredentialsRequest sends arbitrary bodies and Authorization headers to
// POST /credentials. The handler must never panic or fail with a 5xx, and
// every answer must be JSON of the credentials or the error shape.
func FuzzCredentialsRequest(f *testing.F) {
	e := newEnv(f)
	tok := e.token("acme")
	for _, body := range []string{"", "{}", `{"profile":"objects"}`, `{"tenant_id":"globex"}`, `{"tenant_id":"*"}`,
		`{"profile":1}`, `{"x":1}`, `{} {}`, `[`, "\x00", `{"tenant_id":"a\u0000b"}`} {
		f.Add([]byte(body), "Bearer "+tok)
	}
	f.Add([]byte(`{}`), "")
	f.Add([]byte(`{}`), "Bearer garbage")
	f.Add([]byte(`{}`), "bearer "+tok)
	f.Fuzz(func(t *testing.T, body []byte, authorization string) {
		req := httptest.NewRequest(http.MethodPost, "/credentials", bytes.NewReader(body))
		req.Header.Set("Authorization", authorization)
		rec := httptest.NewRecorder()
		e.handler.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body)
		}
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("non-JSON answer %q", rec.Body)
		}
		if rec.Code == http.StatusOK {
			if out["TenantId"] == nil || out["AccessKeyId"] == nil {
				t.Fatalf("200 without credentials: %s", rec.Body)
			}
		} else if out["code"] == nil || out["message"] == nil {
			t.Fatalf("%d without the error shape: %s", rec.Code, rec.Body)
		}
	})
}
