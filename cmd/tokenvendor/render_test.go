package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/config"
	"github.com/tokenvendor/tokenvendor/internal/server"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
	"github.com/tokenvendor/tokenvendor/internal/vend"
)

// renderedInput is what render prints.
type renderedInput struct {
	RoleArn, RoleSessionName, SourceIdentity, ExternalId string
	DurationSeconds                                      int
	Policy                                               json.RawMessage
	Tags                                                 []struct{ Key, Value string }
}

// siloConfig is a config of a pool profile and a silo profile, chained:
// the service's own credentials are a role session.
func siloConfig(t *testing.T, stsURL string) string {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "external-id.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("k", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "tenants.txt")
	if err := os.WriteFile(file, []byte("acme account_id=222233334444\nglobex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := `auth:
  issuer: https://idp.example.com/
  jwks_url: https://idp.example.com/jwks
  audiences: [tokenvendor]
sts:
  endpoint: ` + stsURL + `
  role_chaining: "on"
tenants:
  file: ` + file + `
session:
  source_identity: true
profiles:
  - name: silo
    role_arn: 'arn:{{ .Partition }}:iam::{{ .Attr "account_id" }}:role/TenantAccess'
    external_id: derived
    external_id_key_file: ` + key + `
    duration: 4h
    policy: '` + scopedPolicy + `'
    tags: {TenantID: "{{ .TenantID }}"}
`
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRenderPrintsWhatServeSends(t *testing.T) {
	srv := testsupport.NewSTSServer(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDSERVICE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "service-secret")
	path := siloConfig(t, srv.URL)

	out, err := runCLI("render", "--config", path, "--profile", "silo", "--tenant", "acme", "--subject", "orders-api")
	if err != nil {
		t.Fatal(err)
	}
	var rendered renderedInput
	if err := json.Unmarshal([]byte(out), &rendered); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rendered.DurationSeconds != 3600 {
		t.Errorf("render printed DurationSeconds %d for a 4h profile with role_chaining on, want 3600", rendered.DurationSeconds)
	}
	if rendered.RoleArn != "arn:aws:iam::222233334444:role/TenantAccess" || len(rendered.ExternalId) != 64 {
		t.Errorf("render printed role %q and ExternalId %q; want acme's account and a derived id", rendered.RoleArn, rendered.ExternalId)
	}

	// serve's own composition of the vend service, with the same config.
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, release, err := server.NewVendor(ctx, cfg, server.Telemetry{Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if _, err := svc.Vend(ctx, auth.Caller{Subject: "orders-api", TenantID: "acme"}, vend.Request{Profile: "silo"}); err != nil {
		t.Fatal(err)
	}
	forms := srv.Forms()
	if len(forms) != 1 {
		t.Fatalf("%d AssumeRole calls, want 1", len(forms))
	}
	sent := forms[0]
	want := url.Values{"Action": {"AssumeRole"}, "Version": {"2011-06-15"},
		"RoleArn": {rendered.RoleArn}, "RoleSessionName": {rendered.RoleSessionName}, "SourceIdentity": {rendered.SourceIdentity},
		"ExternalId": {rendered.ExternalId}, "DurationSeconds": {strconv.Itoa(rendered.DurationSeconds)}, "Policy": {string(rendered.Policy)}}
	for i, tag := range rendered.Tags {
		want.Set(fmt.Sprintf("Tags.member.%d.Key", i+1), tag.Key)
		want.Set(fmt.Sprintf("Tags.member.%d.Value", i+1), tag.Value)
	}
	// Every field serve sent, and nothing else, is what render printed.
	if !reflect.DeepEqual(sent, want) {
		t.Errorf("serve sent\n%v\nrender printed\n%v", sent, want)
	}
}

func TestRenderTakesAttributesFromTheFlagsOverTheFile(t *testing.T) {
	path := siloConfig(t, "http://127.0.0.1:1")
	out, err := runCLI("render", "--config", path, "--profile", "silo", "--tenant", "acme", "--attr", "account_id=333344445555")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"RoleArn":"arn:aws:iam::333344445555:role/TenantAccess"`) {
		t.Errorf("render = %s, want the account given with --attr", out)
	}
	_, err = runCLI("render", "--config", path, "--profile", "silo", "--tenant", "globex")
	if err == nil || !strings.Contains(err.Error(), `lacks the attribute "account_id"`) {
		t.Errorf("render of a tenant without account_id: %v, want the missing attribute named", err)
	}
}

func TestCheckSaysWhichAttributesAProfileReads(t *testing.T) {
	out, err := runCLI("check", "--config", siloConfig(t, "http://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "ok: profile silo reads tenant attributes account_id") {
		t.Errorf("check = %q, want the silo profile's attribute named", out)
	}
}

func TestRevokeRefusesAProfileWithRolesOfTheTenantsOwn(t *testing.T) {
	cfg, err := config.Load(siloConfig(t, "http://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := tagsTenants(cfg, "acme"); err == nil || !strings.Contains(err.Error(), "profile silo vends a role of each tenant's own") {
		t.Errorf("tagsTenants = %v, want the silo profile refused: the revocation policy is not on its roles", err)
	}
}
