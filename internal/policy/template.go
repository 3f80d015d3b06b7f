package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"text/template"

	lru "github.com/hashicorp/golang-lru/v2"
)

// STS limits the rendered output must respect.
const (
	MaxPolicyLength      = 2048
	MaxTags              = 50
	MaxTagKeyLength      = 128
	MaxTagValueLength    = 256
	MaxSessionNameLength = 64
	MinSessionNameLength = 2
	PolicyVersion        = "2012-10-17"
)

var (
	tagKeyPattern      = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]{1,128}$`)
	tagValuePattern    = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]{0,256}$`)
	sessionNameInvalid = regexp.MustCompile(`[^\w+=,.@-]`)
)

// Spec is the source of one profile's templates, as configured.
type Spec struct {
	Profile string
	Policy  string
	Tags    map[string]string
	Vars    map[string]string
	// RoleIsolates says the access role's own policy, not the session
	// policy, confines the session to its tenant (ABAC on the session's
	// tags): the lint then does not require each Allow statement to name
	// the tenant.
	RoleIsolates bool
	// Partition and Region are the STS region's, for ARNs written
	// arn:{{ .Partition }}:… that hold in every partition.
	Partition, Region string
}

// Template is a profile's policy and tag templates, parsed and ready to
// render for any valid tenant.
type Template struct {
	profile      string
	roleIsolates bool
	doc          any // map[string]any, []any, string, *template.Template, json.Number, bool or nil
	tags         []tagTemplate
	vars         map[string]string
	partition    string
	region       string
	tenants      *TenantRule
	// rendered remembers renderings by tenant: rendering is pure, and a
	// profile's templates never change once compiled.
	rendered *lru.Cache[string, Rendered]
}

// renderedCacheSize bounds the renderings each template remembers.
const renderedCacheSize = 10_000

type tagTemplate struct {
	key   string
	value *template.Template
}

// Rendered is the session policy and tags STS receives for one tenant of one
// profile. The role session name comes from a SessionNamer.
type Rendered struct {
	Policy string
	Tags   []Tag
}

// Tag is one session tag.
type Tag struct {
	Key   string
	Value string
}

// Compile parses spec's policy as JSON and every string leaf in it, and every
// tag value, as a text/template. Tenant ids are checked against tenants
// before any rendering.
func Compile(spec Spec, tenants *TenantRule) (*Template, error) {
	if tenants == nil {
		return nil, errors.New("no tenant rule")
	}
	var errs []error
	rendered, err := lru.New[string, Rendered](renderedCacheSize)
	if err != nil {
		return nil, err
	}
	t := &Template{profile: spec.Profile, roleIsolates: spec.RoleIsolates, vars: spec.Vars, partition: spec.Partition, region: spec.Region, tenants: tenants, rendered: rendered}

	if strings.TrimSpace(spec.Policy) == "" {
		errs = append(errs, errors.New("policy: empty"))
	} else {
		dec := json.NewDecoder(strings.NewReader(spec.Policy))
		dec.UseNumber()
		var raw any
		if err := dec.Decode(&raw); err != nil {
			errs = append(errs, fmt.Errorf("policy: not valid JSON: %w", err))
		} else if dec.More() {
			errs = append(errs, errors.New("policy: trailing data after the JSON document"))
		} else if doc, err := compileNode(raw, "policy"); err != nil {
			errs = append(errs, err)
		} else {
			t.doc = doc
		}
	}

	if len(spec.Tags) > MaxTags {
		errs = append(errs, fmt.Errorf("tags: %d tags, STS allows at most %d", len(spec.Tags), MaxTags))
	}
	keys := make([]string, 0, len(spec.Tags))
	for k := range spec.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !tagKeyPattern.MatchString(k) || strings.HasPrefix(strings.ToLower(k), "aws:") {
			errs = append(errs, fmt.Errorf("tags.%s: not a valid session tag key", k))
			continue
		}
		tmpl, err := parseLeaf(spec.Tags[k])
		if err != nil {
			errs = append(errs, fmt.Errorf("tags.%s: %w", k, err))
			continue
		}
		t.tags = append(t.tags, tagTemplate{key: k, value: tmpl})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

func compileNode(v any, path string) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		var errs []error
		for k, child := range v {
			if strings.Contains(k, "{{") {
				errs = append(errs, fmt.Errorf("%s: template action in object key %q; templates may appear only inside string values", path, k))
				continue
			}
			c, err := compileNode(child, path+"."+k)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out[k] = c
		}
		return out, errors.Join(errs...)
	case []any:
		out := make([]any, len(v))
		var errs []error
		for i, child := range v {
			c, err := compileNode(child, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out[i] = c
		}
		return out, errors.Join(errs...)
	case string:
		if !strings.Contains(v, "{{") {
			return v, nil
		}
		tmpl, err := parseLeaf(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return tmpl, nil
	default:
		return v, nil
	}
}

func parseLeaf(s string) (*template.Template, error) {
	tmpl, err := template.New("").Option("missingkey=error").Parse(s)
	if err != nil {
		return nil, fmt.Errorf("bad template: %w", err)
	}
	return tmpl, nil
}

// Render produces the policy, tags and session name for tenant, after
// checking tenant against the tenant rule.
func (t *Template) Render(tenant string) (Rendered, error) {
	if r, ok := t.rendered.Get(tenant); ok {
		return r, nil
	}
	if err := t.tenants.Check(tenant); err != nil {
		return Rendered{}, err
	}
	r, err := t.render(tenant)
	if err != nil {
		return Rendered{}, err
	}
	t.rendered.Add(tenant, r)
	return r, nil
}

func (t *Template) render(tenant string) (Rendered, error) {
	data := map[string]any{"TenantID": tenant, "Profile": t.profile, "Vars": t.vars, "Partition": t.partition, "Region": t.region}
	doc, err := renderNode(t.doc, data)
	if err != nil {
		return Rendered{}, fmt.Errorf("render policy: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return Rendered{}, fmt.Errorf("render policy: %w", err)
	}
	policy := strings.TrimSuffix(buf.String(), "\n")
	if len(policy) > MaxPolicyLength {
		return Rendered{}, fmt.Errorf("render policy: %d characters, STS allows at most %d", len(policy), MaxPolicyLength)
	}

	tags := make([]Tag, 0, len(t.tags))
	for _, tt := range t.tags {
		v, err := execute(tt.value, data)
		if err != nil {
			return Rendered{}, fmt.Errorf("render tag %s: %w", tt.key, err)
		}
		if !tagValuePattern.MatchString(v) {
			return Rendered{}, fmt.Errorf("render tag %s: value is not a valid session tag value", tt.key)
		}
		tags = append(tags, Tag{Key: tt.key, Value: v})
	}
	return Rendered{Policy: policy, Tags: tags}, nil
}

func renderNode(v any, data map[string]any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, child := range v {
			c, err := renderNode(child, data)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, child := range v {
			c, err := renderNode(child, data)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case *template.Template:
		return execute(v, data)
	default:
		return v, nil
	}
}

func execute(tmpl *template.Template, data map[string]any) (string, error) {
	var sb strings.Builder
	if err := tmpl.Execute(&sb, data); err != nil {
		return "", err
	}
	return sb.String(), nil
}

// sanitizeSessionName maps raw into STS's role session name (and source
// identity) rules: [\w+=,.@-], 2 to 64 characters. A name that had to be
// changed (a character replaced, cut, or padded) ends in a short hash of the
// raw text, so two raw names never end up as the same name.
func sanitizeSessionName(raw string) string {
	name := sessionNameInvalid.ReplaceAllString(raw, "-")
	if name == raw && len(name) >= MinSessionNameLength && len(name) <= MaxSessionNameLength {
		return name
	}
	sum := sha256.Sum256([]byte(raw))
	suffix := "-" + hex.EncodeToString(sum[:4])
	if len(name) > MaxSessionNameLength-len(suffix) {
		name = name[:MaxSessionNameLength-len(suffix)]
	}
	return name + suffix
}
