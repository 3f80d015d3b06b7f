package policy_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/tokenvendor/tokenvendor/internal/policy"
)

func TestTenantRuleCheck(t *testing.T) {
	defaultRule := mustTenantRule(t, "")
	tests := []struct {
		name    string
		pattern string // "" is the default pattern
		id      string
		wantErr bool
	}{
		{name: "lower case", id: "acme"},
		{name: "mixed case digits and dash", id: "Acme-01"},
		{name: "one character", id: "a"},
		{name: "63 characters", id: strings.Repeat("a", 63)},
		{name: "64 characters over default pattern", id: strings.Repeat("a", 64), wantErr: true},
		{name: "wildcard", id: "*", wantErr: true},
		{name: "prefix wildcard", id: "acme/*", wantErr: true},
		{name: "trailing wildcard", id: "acme*", wantErr: true},
		{name: "quote", id: `a"b`, wantErr: true},
		{name: "policy variable", id: "${aws:username}", wantErr: true},
		{name: "empty", id: "", wantErr: true},
		{name: "200 characters", id: strings.Repeat("a", 200), wantErr: true},
		{name: "cyrillic lookalike", id: "\u0430cme", wantErr: true},
		{name: "NUL byte", id: "a\x00b", wantErr: true},
		{name: "path traversal", id: "../x", wantErr: true},
		{name: "trailing space", id: "acme ", wantErr: true},
		{name: "question mark", id: "ac?me", wantErr: true},
		{name: "trailing newline", id: "acme\n", wantErr: true},
		{name: "inner newline", id: "ac\nme", wantErr: true},
		{name: "permissive pattern keeps the floor for wildcard", pattern: `^.*$`, id: "*", wantErr: true},
		{name: "permissive pattern keeps the floor for slash", pattern: `^.*$`, id: "acme/x", wantErr: true},
		{name: "permissive pattern keeps the floor for 65 characters", pattern: `^.*$`, id: strings.Repeat("a", 65), wantErr: true},
		{name: "permissive pattern accepts what the floor allows", pattern: `^.*$`, id: "a.b@c=d+e"},
		{name: "narrow pattern rejects upper case", pattern: `^[a-z]{3,8}$`, id: "Acme", wantErr: true},
		{name: "alternation is anchored as a whole", pattern: `^acme|globex$`, id: "acme-evil", wantErr: true},
		{name: "alternation is anchored as a whole at the end", pattern: `^acme|globex$`, id: "xglobex", wantErr: true},
		{name: "alternation accepts its first branch", pattern: `^acme|globex$`, id: "acme"},
		{name: "alternation accepts its second branch", pattern: `^acme|globex$`, id: "globex"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rule := defaultRule
			if tt.pattern != "" {
				rule = mustTenantRule(t, tt.pattern)
			}
			err := rule.Check(tt.id)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("Check(%q) = %v, want nil", tt.id, err)
				}
				return
			}
			if !errors.Is(err, policy.ErrInvalidTenant) {
				t.Fatalf("Check(%q) = %v, want an error wrapping ErrInvalidTenant", tt.id, err)
			}
			if tt.id != "" && strings.Contains(err.Error(), tt.id) {
				t.Errorf("Check(%q) error %q echoes the id", tt.id, err)
			}
		})
	}
}

func TestNewTenantRule(t *testing.T) {
	tests := []struct {
		name       string
		pattern    string
		wantErr    string
		wantMaxLen int
	}{
		{name: "default", pattern: "", wantMaxLen: 63},
		{name: "default spelt out", pattern: policy.DefaultTenantPattern, wantMaxLen: 63},
		{name: "bounded repeat", pattern: `^[a-z]{3,8}$`, wantMaxLen: 8},
		{name: "unbounded is capped", pattern: `^.*$`, wantMaxLen: policy.MaxTenantLength},
		{name: "bound over the cap is capped", pattern: `^[a-z]{1,100}$`, wantMaxLen: policy.MaxTenantLength},
		{name: "alternation", pattern: `^(acme|globex)$`, wantMaxLen: 6},
		{name: "no anchors", pattern: `[a-z]+`, wantErr: "anchored"},
		{name: "no end anchor", pattern: `^[a-z]+`, wantErr: "anchored"},
		{name: "no start anchor", pattern: `[a-z]+$`, wantErr: "anchored"},
		{name: "bad regexp", pattern: `^[a-z$`, wantErr: "not a regular expression"},
		{name: "unbalanced group cannot escape the anchors", pattern: `^x)|(.*$`, wantErr: "not a regular expression"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rule, err := policy.NewTenantRule(tt.pattern)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NewTenantRule(%q) error = %v, want one containing %q", tt.pattern, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewTenantRule(%q) = %v", tt.pattern, err)
			}
			if got := rule.MaxLen(); got != tt.wantMaxLen {
				t.Errorf("MaxLen() = %d, want %d", got, tt.wantMaxLen)
			}
		})
	}
}

func mustTenantRule(t testing.TB, pattern string) *policy.TenantRule {
	t.Helper()
	rule, err := policy.NewTenantRule(pattern)
	if err != nil {
		t.Fatalf("NewTenantRule(%q) = %v", pattern, err)
	}
	return rule
}
