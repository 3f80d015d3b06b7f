// Package policy turns a profile's policy and tag templates into the exact
// session policy, session tags and role session name sent to STS for one
// tenant. It is pure: no I/O, no context, no clock.
//
// Templates are parsed as JSON once, at start-up. Template actions may appear
// only inside string values, and rendering executes each string leaf on its
// own, so a tenant id can change the text of a value but never the shape of
// the document: it cannot add a statement, an action or a resource, and it
// cannot break out of a string.
package policy

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
)

// ErrInvalidTenant reports a tenant id outside the configured pattern or the
// built-in safety floor.
var ErrInvalidTenant = errors.New("invalid tenant id")

// MaxTenantLength is the longest tenant id accepted whatever the pattern says.
const MaxTenantLength = 64

// DefaultTenantPattern is the tenant pattern used when none is configured.
const DefaultTenantPattern = `^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`

// tenantFloor holds every tenant id, whatever the configured pattern allows:
// no character that IAM treats as a wildcard, variable, path separator or
// quote can ever reach a policy (`*`, `?`, `$`, `{`, `/`, `"`, `\`), no
// whitespace or control character, nothing outside ASCII (no lookalikes), and
// only characters that are also legal in a role session name and a tag value.
var tenantFloor = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@=+-]{0,63}$`)

// TenantRule validates tenant ids against the configured pattern and the
// built-in floor.
type TenantRule struct {
	pattern *regexp.Regexp
	maxLen  int
}

// NewTenantRule compiles pattern (DefaultTenantPattern when empty). The
// pattern must be anchored at both ends, so that it describes the whole id.
func NewTenantRule(pattern string) (*TenantRule, error) {
	if pattern == "" {
		pattern = DefaultTenantPattern
	}
	if !strings.HasPrefix(pattern, "^") || !strings.HasSuffix(pattern, "$") {
		return nil, errors.New("must be anchored with ^ and $")
	}
	if _, err := regexp.Compile(pattern); err != nil {
		return nil, fmt.Errorf("not a regular expression: %w", err)
	}
	// A leading ^ and trailing $ do not anchor an alternation (`^a|b$`
	// matches "xb"), so the pattern is matched against the whole id. It
	// compiled on its own above, so its parentheses balance and it cannot
	// close the group it is wrapped in.
	whole := "^(?:" + pattern + ")$"
	re, err := regexp.Compile(whole)
	if err != nil {
		return nil, fmt.Errorf("not a regular expression: %w", err)
	}
	parsed, err := syntax.Parse(whole, syntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("not a regular expression: %w", err)
	}
	n := maxMatchLen(parsed.Simplify())
	if n < 0 || n > MaxTenantLength {
		n = MaxTenantLength
	}
	return &TenantRule{pattern: re, maxLen: n}, nil
}

// Check returns nil when id is an acceptable tenant id, and an error wrapping
// ErrInvalidTenant otherwise. The id itself is not echoed in the error, as it
// is caller input of unbounded content.
func (r *TenantRule) Check(id string) error {
	if !tenantFloor.MatchString(id) {
		return fmt.Errorf("%w: outside the characters and length any tenant id may have", ErrInvalidTenant)
	}
	if !r.pattern.MatchString(id) {
		return fmt.Errorf("%w: does not match tenant_pattern", ErrInvalidTenant)
	}
	return nil
}

// MaxLen is the longest tenant id the rule can accept, used to size the
// probe that lints templates against STS's limits.
func (r *TenantRule) MaxLen() int { return r.maxLen }

// maxMatchLen returns the longest string re can match, or -1 when unbounded.
func maxMatchLen(re *syntax.Regexp) int {
	switch re.Op {
	case syntax.OpLiteral:
		return len(re.Rune)
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return 1
	case syntax.OpCapture, syntax.OpQuest:
		return maxMatchLen(re.Sub[0])
	case syntax.OpStar, syntax.OpPlus:
		if maxMatchLen(re.Sub[0]) == 0 {
			return 0
		}
		return -1
	case syntax.OpRepeat:
		sub := maxMatchLen(re.Sub[0])
		if sub < 0 || re.Max < 0 {
			return -1
		}
		return sub * re.Max
	case syntax.OpConcat:
		total := 0
		for _, s := range re.Sub {
			n := maxMatchLen(s)
			if n < 0 {
				return -1
			}
			total += n
		}
		return total
	case syntax.OpAlternate:
		longest := 0
		for _, s := range re.Sub {
			n := maxMatchLen(s)
			if n < 0 {
				return -1
			}
			longest = max(longest, n)
		}
		return longest
	default:
		return 0
	}
}
