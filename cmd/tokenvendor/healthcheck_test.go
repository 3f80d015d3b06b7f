package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthcheckPassesOnlyOn200(t *testing.T) {
	status := http.StatusOK
	var path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.Path
		w.WriteHeader(status)
	}))
	defer srv.Close()

	if _, _, err := runWith(nil, "healthcheck", "--url", srv.URL+"/readyz"); err != nil {
		t.Fatalf("200: %v", err)
	}
	if path != "/readyz" {
		t.Errorf("checked %q", path)
	}
	for _, s := range []int{http.StatusServiceUnavailable, http.StatusNotFound, http.StatusFound, http.StatusInternalServerError} {
		status = s
		_, _, err := runWith(nil, "healthcheck", "--url", srv.URL+"/readyz")
		if err == nil || !strings.Contains(err.Error(), "want 200") {
			t.Errorf("status %d: err = %v, want a failure", s, err)
		}
	}
}

func TestHealthcheckFailsWhenNothingAnswers(t *testing.T) {
	hang := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	down := httptest.NewServer(nil)
	down.Close()
	for name, args := range map[string][]string{
		"hanging":           {"--url", hang.URL + "/readyz", "--timeout", "50ms"},
		"nothing listening": {"--url", down.URL + "/readyz"},
	} {
		_, _, err := runWith(nil, append([]string{"healthcheck"}, args...)...)
		if err == nil || errors.Is(err, errUsage) {
			t.Errorf("%s: err = %v, want a runtime failure", name, err)
		}
	}
}

func TestHealthcheckUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"--url", "127.0.0.1:8080/readyz"}, {"--timeout", "-1s"}, {"extra"}, {"--config", "x"}} {
		_, _, err := runWith(nil, append([]string{"healthcheck"}, args...)...)
		if !errors.Is(err, errUsage) {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
}
