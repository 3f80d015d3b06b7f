package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// referenceProbe is a tenant id unlikely to occur in any template's literal
// text, so finding it in a rendered statement proves the statement is scoped
// by the tenant.
const referenceProbe = "tvprobe7q3k"

// Lint renders the template with probe tenants and reports every problem: a
// policy that is not an IAM policy document of version 2012-10-17, an Allow
// statement whose Resource and Condition do not reference the tenant, output
// over STS's 2048-character limit for the longest tenant id the pattern
// allows, and tags STS would refuse.
func (t *Template) Lint() error {
	var errs []error
	probe, err := t.render(referenceProbe)
	if err != nil {
		return fmt.Errorf("template: %w", err)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(probe.Policy), &doc); err != nil {
		return errors.New("policy: not a JSON object")
	}
	if v, _ := doc["Version"].(string); v != PolicyVersion {
		errs = append(errs, fmt.Errorf("policy.Version: must be %q", PolicyVersion))
	}
	var statements []any
	switch s := doc["Statement"].(type) {
	case []any:
		statements = s
	case map[string]any:
		statements = []any{s}
	}
	if len(statements) == 0 {
		errs = append(errs, errors.New("policy.Statement: no statements"))
	}
	for i, s := range statements {
		st, ok := s.(map[string]any)
		if !ok {
			errs = append(errs, fmt.Errorf("policy.Statement[%d]: not an object", i))
			continue
		}
		switch st["Effect"] {
		case "Deny":
		case "Allow":
			if !mentions(st["Resource"], referenceProbe) && !mentions(st["Condition"], referenceProbe) {
				errs = append(errs, fmt.Errorf("policy.Statement[%d]: Allow statement does not reference the tenant in its Resource or Condition", i))
			}
		default:
			errs = append(errs, fmt.Errorf("policy.Statement[%d].Effect: must be Allow or Deny", i))
		}
	}

	long := longProbe(t.tenants.MaxLen())
	if _, err := t.render(long); err != nil {
		errs = append(errs, fmt.Errorf("template: with a %d-character tenant id (the longest tenant_pattern allows): %w", len(long), err))
	}
	return errors.Join(errs...)
}

func longProbe(n int) string {
	p := "tvprobe" + strings.Repeat("x", max(0, n-len("tvprobe")))
	return p[:max(1, n)]
}

func mentions(v any, probe string) bool {
	if v == nil {
		return false
	}
	b, err := json.Marshal(v)
	return err == nil && strings.Contains(string(b), probe)
}
