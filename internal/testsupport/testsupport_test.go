package testsupport

import (
	"io"
	"net/http"
	"testing"
	"testing/synctest"
	"time"
)

// TestHandlerClientServesInProcess inside a bubble: no socket, so the
// bubble's clock moves while the client waits for nothing.
func TestHandlerClientServesInProcess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := HandlerClient(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(time.Hour) // a slow server, in the bubble's time
			w.WriteHeader(http.StatusTeapot)
			_, _ = io.WriteString(w, r.URL.Path)
		}))
		start := time.Now()
		res, err := c.Get("https://nowhere.test/credentials")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusTeapot || string(b) != "/credentials" || time.Since(start) != time.Hour {
			t.Fatalf("%d %q after %s", res.StatusCode, b, time.Since(start))
		}
	})
}
