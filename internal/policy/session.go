package policy

import (
	"errors"
	"fmt"
	"strings"
	"text/template"

	lru "github.com/hashicorp/golang-lru/v2"
)

// DefaultSessionNameTemplate names a session after its tenant and profile.
const DefaultSessionNameTemplate = "{{ .TenantID }}@{{ .Profile }}"

// SessionNamer makes the role session name and, optionally, the source
// identity of each AssumeRole, so that every AWS call made with vended
// credentials names the tenant and the calling service in CloudTrail. Names
// are deterministic, so they stay the same across refreshes.
type SessionNamer struct {
	tmpl           *template.Template
	sourceIdentity bool
	perCaller      bool
	// names remembers names that do not depend on the caller, keyed by
	// tenant and profile: they are asked for on every request.
	names *lru.Cache[[2]string, string]
}

// NewSessionNamer compiles nameTemplate (DefaultSessionNameTemplate when
// empty; values .TenantID, .Profile, .Subject). The name must carry the
// tenant. With sourceIdentity, the caller's subject is sent as SourceIdentity.
func NewSessionNamer(nameTemplate string, sourceIdentity bool) (*SessionNamer, error) {
	if nameTemplate == "" {
		nameTemplate = DefaultSessionNameTemplate
	}
	tmpl, err := parseLeaf(nameTemplate)
	if err != nil {
		return nil, err
	}
	names, err := lru.New[[2]string, string](renderedCacheSize)
	if err != nil {
		return nil, err
	}
	n := &SessionNamer{tmpl: tmpl, sourceIdentity: sourceIdentity}
	probe, err := n.Name(referenceProbe, "profile", "subject")
	if err != nil {
		return nil, err
	}
	if !strings.Contains(probe, referenceProbe) {
		return nil, errors.New("must include {{ .TenantID }}, so that CloudTrail names the tenant")
	}
	long, err := n.Name(referenceProbe, "profile", strings.Repeat("s", 2*MaxSessionNameLength))
	if err != nil {
		return nil, err
	}
	if !strings.Contains(long, referenceProbe) {
		return nil, errors.New("a long subject would cut {{ .TenantID }} out of the name; put the tenant before the subject")
	}
	other, err := n.Name(referenceProbe, "profile", "another-subject")
	if err != nil {
		return nil, err
	}
	n.perCaller = other != probe || sourceIdentity
	n.names = names
	return n, nil
}

// Name renders the role session name for a tenant of a profile called by
// subject, within STS's rules.
func (n *SessionNamer) Name(tenant, profile, subject string) (string, error) {
	key := [2]string{tenant, profile}
	remember := n.names != nil && !n.perCaller
	if remember {
		if name, ok := n.names.Get(key); ok {
			return name, nil
		}
	}
	raw, err := execute(n.tmpl, map[string]any{"TenantID": tenant, "Profile": profile, "Subject": subject})
	if err != nil {
		return "", fmt.Errorf("session name: %w", err)
	}
	name := sanitizeSessionName(raw)
	if remember {
		n.names.Add(key, name)
	}
	return name, nil
}

// SourceIdentity is the caller's subject within STS's rules for
// SourceIdentity (2-64 characters of [\w+=,.@-], so never "aws:..."), or ""
// when source identity is off or there is no subject.
func (n *SessionNamer) SourceIdentity(subject string) string {
	if !n.sourceIdentity || subject == "" {
		return ""
	}
	return sanitizeSessionName(subject)
}

// PerCaller reports whether the STS inputs depend on the caller, so that
// credentials are cached per caller rather than shared by a tenant.
func (n *SessionNamer) PerCaller() bool { return n.perCaller }
