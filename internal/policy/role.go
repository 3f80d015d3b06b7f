package policy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/tokenvendor/tokenvendor/internal/partition"
)

// DerivedExternalID, as a profile's external_id, makes each tenant's
// ExternalId HMAC-SHA256(key, tenant id) in hex: unique per tenant, so the
// id one tenant's role trusts opens no other tenant's role.
const DerivedExternalID = "derived"

// MinExternalIDKeyLength is the least key of a derived ExternalId, in bytes.
const MinExternalIDKeyLength = 32

// ErrTenantNotSetUp is returned when a tenant's attributes do not make a
// role the profile can assume: an attribute a template reads is missing or
// holds a value no ARN may hold, or the role ARN or ExternalId rendered
// with them is not valid. (The templates themselves were checked at
// compile time, with every attribute an account id.)
var ErrTenantNotSetUp = errors.New("the tenant is not set up for the profile's role")

var (
	externalIDPattern = regexp.MustCompile(`^[\w+=,.@:/-]+$`)
	// attributeValuePattern is what an attribute may hold to be put in a
	// role ARN or ExternalId: no ':' or '/', which would move it into
	// another part of the ARN.
	attributeValuePattern = regexp.MustCompile(`^[\w+=,.@-]{1,128}$`)
)

// sampleAttribute stands for every attribute while a template is checked:
// an account id, so that a template putting it there renders a valid ARN.
const sampleAttribute = "123456789012"

// RoleSpec is the source of a profile's role ARN and ExternalId, as
// configured: each literal text or a text/template over .TenantID,
// .Partition, .Region and .Attr "name" (the tenant's attributes).
type RoleSpec struct {
	RoleARN string
	// ExternalID is "", a literal, a template, or DerivedExternalID.
	ExternalID string
	// ExternalIDKey is the key of a derived ExternalId.
	ExternalIDKey []byte
	Partition     partition.Partition
	Region        string
}

// Role renders a profile's role ARN and ExternalId for a tenant: the same
// for every tenant (the pool), or a role or an account of each tenant's own
// (the bridge and the silo).
type Role struct {
	arn, externalID *template.Template
	// sameRole matches the ARN of any role the template can render: by
	// partition, account and name, whatever the path and the case, as IAM
	// tells roles apart.
	sameRole   *regexp.Regexp
	derivedKey []byte
	partition  partition.Partition
	region     string
	tenants    *TenantRule
	attributes []string
	perTenant  bool
	// fixed is the target of every tenant when neither template has an
	// action and the ExternalId is not derived (the pool): rendered once,
	// not on every request.
	fixed *Target
}

// Target is the role a tenant's session assumes, and the ExternalId it
// presents.
type Target struct {
	RoleARN    string
	ExternalID string
}

// roleData is what role templates see.
type roleData struct {
	TenantID, Partition, Region string
	attrs                       map[string]string
	read                        map[string]bool // when set, every attribute reads sampleAttribute and is noted
	err                         error           // the first attribute that failed
}

// Attr is the tenant's attribute name; an error when it has none.
func (d *roleData) Attr(name string) (string, error) {
	if d.read != nil {
		d.read[name] = true
		return sampleAttribute, nil
	}
	v, ok := d.attrs[name]
	switch {
	case !ok:
		d.err = fmt.Errorf("%w: its item lacks the attribute %q", ErrTenantNotSetUp, name)
	case !attributeValuePattern.MatchString(v):
		d.err = fmt.Errorf("%w: its attribute %q holds no value an ARN or ExternalId may take ([\\w+=,.@-], 1 to 128 characters)", ErrTenantNotSetUp, name)
	default:
		return v, nil
	}
	return "", d.err
}

// CompileRole parses spec's templates and checks them: each renders, with
// a probe tenant and every attribute it reads, a role ARN of the partition
// and a valid ExternalId, also with the longest tenant id the tenant rule
// allows.
func CompileRole(spec RoleSpec, tenants *TenantRule) (*Role, error) {
	if tenants == nil {
		return nil, errors.New("no tenant rule")
	}
	r := &Role{partition: spec.Partition, region: spec.Region, tenants: tenants}
	var errs []error
	var err error
	if r.arn, err = parseLeaf(spec.RoleARN); err != nil {
		errs = append(errs, fmt.Errorf("role_arn: %w", err))
	}
	switch {
	case spec.ExternalID == DerivedExternalID && len(spec.ExternalIDKey) < MinExternalIDKeyLength:
		errs = append(errs, fmt.Errorf("external_id: derived needs a key of at least %d bytes (external_id_key_file)", MinExternalIDKeyLength))
	case spec.ExternalID == DerivedExternalID:
		r.derivedKey = slices.Clone(spec.ExternalIDKey)
	case len(spec.ExternalIDKey) > 0:
		errs = append(errs, errors.New("external_id_key_file: only with external_id: derived"))
	case spec.ExternalID != "":
		if r.externalID, err = parseLeaf(spec.ExternalID); err != nil {
			errs = append(errs, fmt.Errorf("external_id: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	r.sameRole = sameRolePattern(r.arn)
	if err := r.check(); err != nil {
		return nil, err
	}
	if r.derivedKey == nil && literal(r.arn) && (r.externalID == nil || literal(r.externalID)) {
		t, err := r.render(&roleData{TenantID: referenceProbe})
		if err != nil {
			return nil, err
		}
		r.fixed = &t
	}
	return r, nil
}

// literal reports whether tmpl is text alone, without an action.
func literal(tmpl *template.Template) bool {
	for _, n := range tmpl.Root.Nodes {
		if _, ok := n.(*parse.TextNode); !ok {
			return false
		}
	}
	return true
}

// check renders the templates with probe tenants, noting the attributes
// they read.
func (r *Role) check() error {
	read := map[string]bool{}
	if _, err := r.render(&roleData{TenantID: referenceProbe, read: read}); err != nil {
		return err
	}
	long := longProbe(r.tenants.MaxLen())
	if _, err := r.render(&roleData{TenantID: long, read: read}); err != nil {
		return fmt.Errorf("%w (with a %d-character tenant id, the longest tenant_pattern allows)", err, len(long))
	}
	if err := r.checkCase(read); err != nil {
		return err
	}
	other, err := r.render(&roleData{TenantID: "tvprobe2", read: read})
	if err != nil {
		return err
	}
	first, _ := r.render(&roleData{TenantID: referenceProbe, read: read})
	r.perTenant = len(read) > 0 || other.RoleARN != first.RoleARN
	for name := range read {
		r.attributes = append(r.attributes, name)
	}
	slices.Sort(r.attributes)
	return nil
}

// checkCase refuses a role whose name or path holds the tenant id when the
// tenant rule admits ids that differ only in case: IAM takes role names
// without case, so tenants acme and ACME would assume one role, and
// nothing would tell them apart but a derived ExternalId in its trust.
func (r *Role) checkCase(read map[string]bool) error {
	upper := strings.ToUpper(referenceProbe)
	if r.derivedKey != nil || r.tenants.Check(upper) != nil {
		return nil
	}
	lower, err := r.render(&roleData{TenantID: referenceProbe, read: read})
	if err != nil {
		return err
	}
	other, err := r.render(&roleData{TenantID: upper, read: read})
	if err != nil {
		return err
	}
	if lower.RoleARN != other.RoleARN && strings.EqualFold(lower.RoleARN, other.RoleARN) {
		return errors.New("role_arn: puts the tenant id in the role's name or path, and tenant_pattern admits ids that differ only in case (acme, ACME), which IAM takes for one role: make auth.tenant_pattern lower-case (^[a-z0-9][a-z0-9_-]{0,62}$), or use external_id: derived, so that the role's trust tells them apart")
	}
	return nil
}

// Matches reports whether roleARN names a role the template may render
// for some tenant: the same partition, account and name, whatever its path
// and the case of its name, every action of the template standing for any
// value an attribute or a tenant id may hold.
func (r *Role) Matches(roleARN string) bool {
	p, err := partition.Partition{ID: strings.SplitN(roleARN+":", ":", 3)[1]}.ParseRoleARN(roleARN)
	return err == nil && r.sameRole.MatchString("arn:"+p.Partition+":iam::"+p.Account+":role/"+p.Name)
}

// sameRolePattern is a pattern of the ARNs, without their path, that the
// template renders: its text as it is, each action any run of the
// characters values may hold.
func sameRolePattern(tmpl *template.Template) *regexp.Regexp {
	const action = "\x00"
	var b strings.Builder
	for _, n := range tmpl.Root.Nodes {
		if t, ok := n.(*parse.TextNode); ok {
			b.Write(t.Text)
		} else {
			b.WriteString(action)
		}
	}
	text := b.String()
	quote := func(s string) string {
		return strings.ReplaceAll(regexp.QuoteMeta(s), action, `[\w+=,.@-]+`)
	}
	prefix, resource, ok := strings.Cut(text, ":role/")
	if !ok {
		return regexp.MustCompile(`(?i)^` + quote(text) + `$`)
	}
	name := resource[strings.LastIndexByte(resource, '/')+1:]
	return regexp.MustCompile(`(?i)^` + quote(prefix) + `:role/` + quote(name) + `$`)
}

// PerTenant reports whether tenants may assume roles of their own (a
// bridge or a silo) rather than one role for all (the pool).
func (r *Role) PerTenant() bool { return r.perTenant }

// Attributes are the tenant attributes the templates read.
func (r *Role) Attributes() []string { return slices.Clone(r.attributes) }

// Render returns the role and ExternalId of tenant, whose item holds
// attrs; ErrInvalidTenant or ErrMissingAttribute when it cannot.
func (r *Role) Render(tenant string, attrs map[string]string) (Target, error) {
	if r.fixed != nil {
		// The same for every tenant: nothing of the tenant id reaches it,
		// so there is nothing for an invalid one to widen.
		return *r.fixed, nil
	}
	if err := r.tenants.Check(tenant); err != nil {
		return Target{}, err
	}
	return r.render(&roleData{TenantID: tenant, attrs: attrs})
}

func (r *Role) render(d *roleData) (Target, error) {
	d.Partition, d.Region = r.partition.ID, r.region
	var t Target
	arn, err := executeRole(r.arn, d)
	if err != nil {
		return Target{}, fmt.Errorf("role_arn: %w", err)
	}
	parsed, err := r.partition.ParseRoleARN(arn)
	if err != nil {
		return Target{}, r.notSetUp(d, fmt.Errorf("role_arn: %w", err))
	}
	t.RoleARN = parsed.String()
	switch {
	case r.derivedKey != nil:
		mac := hmac.New(sha256.New, r.derivedKey)
		mac.Write([]byte(d.TenantID))
		t.ExternalID = hex.EncodeToString(mac.Sum(nil))
	case r.externalID != nil:
		if t.ExternalID, err = executeRole(r.externalID, d); err != nil {
			return Target{}, fmt.Errorf("external_id: %w", err)
		}
		if len(t.ExternalID) < 2 || len(t.ExternalID) > 1224 || !externalIDPattern.MatchString(t.ExternalID) {
			return Target{}, r.notSetUp(d, errors.New("external_id: not 2 to 1224 characters of [\\w+=,.@:/-]"))
		}
	}
	return t, nil
}

// notSetUp is err when a template is checked; for a tenant's own render,
// where the template is known good, it is the tenant's attributes that
// make it fail: ErrTenantNotSetUp.
func (r *Role) notSetUp(d *roleData, err error) error {
	if d.read != nil {
		return err
	}
	return fmt.Errorf("%w: %w", ErrTenantNotSetUp, err)
}

func executeRole(tmpl *template.Template, d *roleData) (string, error) {
	var sb strings.Builder
	if err := tmpl.Execute(&sb, d); err != nil {
		if d.err != nil {
			return "", d.err // the attribute's own error, without the template's position
		}
		return "", err
	}
	return sb.String(), nil
}
