package e2e

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

// waitLog waits until the vendor's output holds n occurrences of want.
func (v *vendor) waitLog(t *testing.T, want string, n int) {
	t.Helper()
	testsupport.Eventually(t, 10*time.Second, func() error {
		if out := v.out.String(); strings.Count(out, want) < n {
			return fmt.Errorf("%d %q in the output, want %d:\n%s", strings.Count(out, want), want, n, out)
		}
		return nil
	})
}

func TestSIGHUPReloadsProfilesAndKeepsTheOldConfigWhenTheNewIsBroken(t *testing.T) {
	path := writeConfig(t, configOptions{stsEndpoint: peers.minio})
	v := startVendor(t, path, minioUser, minioPassword)
	tok := token(t, "svc-acme")
	if status, body := v.post(t, tok, `{"profile":"reports"}`); status != http.StatusNotFound {
		t.Fatalf("profile reports before reload: %d %s", status, body)
	}

	original, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	reports := strings.ReplaceAll(strings.Replace(objectsProfile, "name: objects", "name: reports", 1), "%s", bucket)
	if err := os.WriteFile(path, append(original, reports...), 0o600); err != nil {
		t.Fatal(err)
	}
	v.signal(syscall.SIGHUP)
	v.waitLog(t, `"msg":"config reloaded"`, 1)
	c := v.vend(t, tok, `{"profile":"reports"}`)
	if err := putGet(c, "acme/report-after-reload.txt"); err != nil {
		t.Fatalf("credentials of the reloaded profile: %v", err)
	}

	// A template that does not scope a statement by the tenant is refused;
	// the running config stays.
	broken := strings.Replace(string(original)+reports, `"Resource":["arn:aws:s3:::{{ .Vars.bucket }}/{{ .TenantID }}/*"]`, `"Resource":["arn:aws:s3:::{{ .Vars.bucket }}/*"]`, 1)
	if broken == string(original)+reports {
		t.Fatal("test bug: the template was not broken")
	}
	if err := os.WriteFile(path, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	v.signal(syscall.SIGHUP)
	v.waitLog(t, `"msg":"config reload failed; keeping the running config"`, 1)
	if !strings.Contains(v.out.String(), "does not reference the tenant") {
		t.Errorf("the reason is not logged:\n%s", v.out.String())
	}
	for _, profile := range []string{"objects", "reports"} {
		if status, body := v.post(t, tok, `{"profile":"`+profile+`"}`); status != http.StatusOK {
			t.Errorf("profile %s after a broken reload: %d %s", profile, status, body)
		}
	}
	if res, err := http.Get(v.url + "/readyz"); err != nil || res.StatusCode != http.StatusOK {
		t.Errorf("not ready after a broken reload: %v", err)
	}
}
