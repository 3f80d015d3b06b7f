package registry_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/registry"
)

func TestNilRegistryAllowsEveryTenant(t *testing.T) {
	r, err := registry.New(registry.Config{})
	if err != nil || r != nil {
		t.Fatalf("New = %v, %v; want nil, nil", r, err)
	}
	if !r.Allowed("anyone") {
		t.Fatal("no registry refused a tenant")
	}
}

func TestInlineAndFileTenants(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tenants.txt")
	if err := os.WriteFile(path, []byte("# tenants\nacme\n\n  globex  \nbad/*\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func(id string) error {
		if id == "bad/*" {
			return errors.New("invalid")
		}
		return nil
	}
	r, err := registry.New(registry.Config{Allow: []string{"initech"}, File: path, Check: check})
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]bool{"acme": true, "globex": true, "initech": true, "bad/*": false, "umbrella": false, "# tenants": false} {
		if got := r.Allowed(id); got != want {
			t.Errorf("Allowed(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestFileChangesArePickedUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tenants.txt")
	if err := os.WriteFile(path, []byte("acme\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := registry.New(registry.Config{File: path})
	if err != nil {
		t.Fatal(err)
	}
	if r.Allowed("umbrella") {
		t.Fatal("umbrella known before it was added")
	}
	if changed, _ := r.Refresh(); changed {
		t.Fatal("an unchanged file counted as a change")
	}
	if err := os.WriteFile(path, []byte("acme\numbrella\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Second)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	if changed, err := r.Refresh(); err != nil || !changed {
		t.Fatalf("Refresh = %v, %v", changed, err)
	}
	if !r.Allowed("umbrella") {
		t.Fatal("new tenant not picked up")
	}
	// A file that disappears keeps the tenants known so far.
	os.Remove(path)
	if _, err := r.Refresh(); err == nil {
		t.Fatal("a missing file was not reported")
	}
	if !r.Allowed("acme") {
		t.Fatal("tenants forgotten when the file went missing")
	}
}

func TestNewFailsOnAnUnreadableFile(t *testing.T) {
	if _, err := registry.New(registry.Config{File: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Fatal("accepted a missing file")
	}
}
