package policy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"

	"github.com/tokenvendor/tokenvendor/internal/policy"
)

var stsName = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)

func TestSessionNamer(t *testing.T) {
	tests := []struct {
		name, template, subject string
		source                  bool
		wantName, wantSource    string
		perCaller               bool
	}{
		{name: "default", subject: "svc-orders", wantName: "acme@orders"},
		{name: "with the subject", template: "{{ .TenantID }}.{{ .Subject }}", subject: "svc-orders", wantName: "acme.svc-orders", perCaller: true},
		{name: "subject sanitised, with a hash of the raw name", template: "{{ .TenantID }}.{{ .Subject }}", subject: "system:serviceaccount:ns:app", wantName: "acme.system-serviceaccount-ns-app-" + hash8("acme.system:serviceaccount:ns:app"), perCaller: true},
		{name: "source identity", subject: "svc-orders", source: true, wantName: "acme@orders", wantSource: "svc-orders", perCaller: true},
		{name: "source identity cannot start with aws:", subject: "aws:root", source: true, wantName: "acme@orders", wantSource: "aws-root-" + hash8("aws:root"), perCaller: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := policy.NewSessionNamer(tt.template, tt.source)
			if err != nil {
				t.Fatal(err)
			}
			name, err := n.Name("acme", "orders", tt.subject)
			if err != nil || name != tt.wantName {
				t.Errorf("Name = %q, %v; want %q", name, err, tt.wantName)
			}
			if got := n.SourceIdentity(tt.subject); got != tt.wantSource {
				t.Errorf("SourceIdentity = %q, want %q", got, tt.wantSource)
			}
			if n.PerCaller() != tt.perCaller {
				t.Errorf("PerCaller = %v, want %v", n.PerCaller(), tt.perCaller)
			}
		})
	}
}

func TestSessionNamesKeepToSTSRules(t *testing.T) {
	n, err := policy.NewSessionNamer("{{ .TenantID }}.{{ .Subject }}", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, subject := range []string{"x", strings.Repeat("long-subject/", 20), "üñí©ødé", "a b\tc\n", `"quoted"`} {
		name, err := n.Name(strings.Repeat("t", 63), "p", subject)
		if err != nil || !stsName.MatchString(name) {
			t.Errorf("subject %q: name %q, %v", subject, name, err)
		}
		if si := n.SourceIdentity(subject); !stsName.MatchString(si) || strings.HasPrefix(si, "aws:") {
			t.Errorf("subject %q: source identity %q", subject, si)
		}
	}
}

func TestSanitisedNamesOfDifferentCallersStayApart(t *testing.T) {
	n, err := policy.NewSessionNamer("{{ .TenantID }}.{{ .Subject }}", true)
	if err != nil {
		t.Fatal(err)
	}
	a, b := "system:serviceaccount:a-b:c", "system:serviceaccount:a:b-c"
	na, _ := n.Name("acme", "p", a)
	nb, _ := n.Name("acme", "p", b)
	if na == nb || n.SourceIdentity(a) == n.SourceIdentity(b) {
		t.Fatalf("%q and %q share a session name %q or source identity", a, b, na)
	}
}

func hash8(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}

func TestSessionNamerRefusesATemplateWithoutTheTenant(t *testing.T) {
	for _, tmpl := range []string{"{{ .Subject }}", "fixed", "{{ .Nope }}", "{{ .TenantID ", "{{ .Subject }}@{{ .TenantID }}"} {
		if _, err := policy.NewSessionNamer(tmpl, false); err == nil {
			t.Errorf("template %q accepted", tmpl)
		}
	}
}
