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
// statement whose Resource and Condition do not reference the tenant, a
// dynamodb:LeadingKeys condition that does not hold every action of its
// statement to the tenant's keys, output over STS's 2048-character limit
// for the longest tenant id the pattern allows, and tags STS would refuse.
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
			errs = append(errs, lintAllow(i, st, t.roleIsolates)...)
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

// lintAllow checks that an Allow statement is confined to the tenant: every
// one of its Resources names the tenant, or a condition under a positive
// operator does, in every value it allows; never next to a wildcard or a
// character a tenant id may hold (with "data/{{ .TenantID }}*", tenant acme
// would reach acme2's objects). A condition on aws:PrincipalTag/* does not
// count: tokenvendor sets the session's tags from the same tenant, so it
// always holds. With roleIsolates the access role's policy confines the
// session, and the statement need not name the tenant.
func lintAllow(i int, st map[string]any, roleIsolates bool) []error {
	var errs []error
	at := fmt.Sprintf("policy.Statement[%d]", i)
	for _, widening := range []string{"NotResource", "NotAction", "NotPrincipal"} {
		if _, ok := st[widening]; ok {
			errs = append(errs, fmt.Errorf("%s: %s in an Allow statement grants everything it does not name", at, widening))
		}
	}
	resources := stringValues(st["Resource"])
	scoped := len(resources) > 0
	for _, r := range resources {
		scoped = scoped && strings.Contains(r, referenceProbe)
	}
	cond, _ := st["Condition"].(map[string]any)
	for op, block := range cond {
		keys, _ := block.(map[string]any)
		for key, v := range keys {
			// ForAllValues holds for a request without the key. It confines
			// only beside a Null guard, or on dynamodb:LeadingKeys, whose
			// actions lintLeadingKeys checks.
			if strings.HasPrefix(op, "ForAllValues:") && !strings.EqualFold(key, leadingKeys) && !nullGuarded(cond, key) {
				continue
			}
			if !positiveOperator(op) || strings.HasPrefix(strings.ToLower(key), "aws:principaltag/") {
				continue
			}
			values := stringValues(v)
			all := len(values) > 0
			for _, value := range values {
				all = all && strings.Contains(value, referenceProbe)
			}
			scoped = scoped || all
		}
	}
	if !scoped && !roleIsolates {
		errs = append(errs, fmt.Errorf("%s: Allow statement does not reference the tenant in every Resource, nor in every value of a condition under a positive condition operator (StringEquals, StringLike, ArnEquals, ArnLike; ForAllValues only beside a Null guard; not on aws:PrincipalTag/*, which tokenvendor sets from the tenant itself); if the access role's policy isolates tenants by their tag, say so with isolation: role", at))
	}
	errs = append(errs, lintLeadingKeys(at, st, cond)...)
	if b, err := json.Marshal(st); err == nil && !tenantBounded(string(b)) {
		errs = append(errs, fmt.Errorf("%s: the tenant id stands next to a wildcard or a character tenant ids may hold, so one tenant would reach another's resources (put a delimiter such as / or # on both sides)", at))
	}
	return errs
}

const leadingKeys = "dynamodb:LeadingKeys"

// keyedActions are the DynamoDB actions whose requests carry
// dynamodb:LeadingKeys, as the Service Authorization Reference lists them
// (in lower case). PartiQLSelect carries it only when the statement names
// the partition key; without, it scans the table.
var keyedActions = map[string]bool{
	"dynamodb:batchgetitem":       true,
	"dynamodb:batchwriteitem":     true,
	"dynamodb:conditioncheckitem": true,
	"dynamodb:deleteitem":         true,
	"dynamodb:getitem":            true,
	"dynamodb:partiqldelete":      true,
	"dynamodb:partiqlinsert":      true,
	"dynamodb:partiqlselect":      true,
	"dynamodb:partiqlupdate":      true,
	"dynamodb:putitem":            true,
	"dynamodb:query":              true,
	"dynamodb:updateitem":         true,
}

// lintLeadingKeys checks a statement confined by dynamodb:LeadingKeys: a
// condition on the key says nothing about a request that carries none (a
// ForAllValues condition holds for it), nor, under ForAnyValue, about the
// other keys of a batch.
func lintLeadingKeys(at string, st, cond map[string]any) []error {
	var confined, forAll, forAny bool
	for op, block := range cond {
		keys, _ := block.(map[string]any)
		for key := range keys {
			if op == "Null" || !strings.EqualFold(key, leadingKeys) {
				continue
			}
			confined = true
			forAll = forAll || strings.HasPrefix(op, "ForAllValues:")
			forAny = forAny || strings.HasPrefix(op, "ForAnyValue:")
		}
	}
	if !confined {
		return nil
	}
	var errs []error
	if forAny {
		errs = append(errs, fmt.Errorf("%s.Condition: ForAnyValue on %s holds when one key of a batch is the tenant's, so a BatchWriteItem or BatchGetItem reaches the other keys' tenants; use ForAllValues", at, leadingKeys))
	}
	for _, a := range stringValues(st["Action"]) {
		service, name, _ := strings.Cut(strings.ToLower(a), ":")
		switch {
		case service == "dynamodb" && keyedActions[service+":"+name]:
			if name == "partiqlselect" && forAll && !nullGuarded(cond, leadingKeys) {
				errs = append(errs, fmt.Errorf(`%s.Condition: %s without the partition key scans the table and carries no %s, which ForAllValues lets through: add "Null": {"%s": "false"}`, at, a, leadingKeys, leadingKeys))
			}
		case service == "dynamodb" || strings.ContainsAny(service, "*?") || !onlyDynamoDBResources(st["Resource"]):
			// Another service's action on a table ARN matches nothing; on
			// any other resource the condition does not hold it either.
			why := "ForAllValues holds for a request without keys: it reads every tenant's data"
			if nullGuarded(cond, leadingKeys) {
				why = "with the Null guard it is never allowed: a mistake either way"
			}
			errs = append(errs, fmt.Errorf("%s.Action: %s carries no %s, so the statement's %s condition cannot hold it to the tenant (%s); beside a %s condition name only actions that carry the key, and allow others in a statement of their own", at, a, leadingKeys, leadingKeys, why, leadingKeys))
		}
	}
	return errs
}

// onlyDynamoDBResources reports whether every Resource is a DynamoDB ARN.
func onlyDynamoDBResources(v any) bool {
	resources := stringValues(v)
	for _, r := range resources {
		if parts := strings.SplitN(r, ":", 4); len(parts) < 4 || parts[0] != "arn" || parts[2] != "dynamodb" {
			return false
		}
	}
	return len(resources) > 0
}

// nullGuarded reports whether cond requires key to be present:
// "Null": {key: "false"}.
func nullGuarded(cond map[string]any, key string) bool {
	keys, _ := cond["Null"].(map[string]any)
	for k, v := range keys {
		if strings.EqualFold(k, key) && (v == "false" || v == false) {
			return true
		}
	}
	return false
}

// positiveOperator reports whether a condition operator can only narrow a
// statement to the value it names: not negated, not case-insensitive (tenant
// ids are case-sensitive), not IfExists (true when the key is absent).
func positiveOperator(op string) bool {
	op = strings.TrimPrefix(strings.TrimPrefix(op, "ForAllValues:"), "ForAnyValue:")
	switch op {
	case "StringEquals", "StringLike", "ArnEquals", "ArnLike":
		return true
	}
	return false
}

// tenantBounded reports whether every occurrence of the probe in text has,
// on both sides, a character that can be neither a wildcard nor part of a
// tenant id (or the edge of a JSON string).
func tenantBounded(text string) bool {
	for i := 0; ; {
		j := strings.Index(text[i:], referenceProbe)
		if j < 0 {
			return true
		}
		start, end := i+j, i+j+len(referenceProbe)
		if start > 0 && !tenantDelimiter(text[start-1]) || end < len(text) && !tenantDelimiter(text[end]) {
			return false
		}
		i = end
	}
}

func tenantDelimiter(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return false
	}
	return !strings.ContainsRune("_.@=+-*?$", rune(c))
}

// stringValues returns the strings of a policy value: a string or an array of them.
func stringValues(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
