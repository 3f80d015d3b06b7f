package policy

import (
	"errors"
	"fmt"
	"strings"
	"text/template"
)

// ErrKeyWithoutTenant is the error of a key template whose output does not
// depend on the tenant.
var ErrKeyWithoutTenant = errors.New("does not depend on {{ .TenantID }}")

// Key is a template of the name of one tenant's object or item (an S3 key,
// a DynamoDB key attribute): Go text/template with {{ .TenantID }} only.
type Key struct {
	tmpl *template.Template
}

// CompileKey parses text. It fails with ErrKeyWithoutTenant when two tenants
// would get the same name.
func CompileKey(text string) (*Key, error) {
	if text == "" {
		return nil, errors.New("required")
	}
	t, err := template.New("key").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	k := &Key{tmpl: t}
	a, err := k.Render("tvprobe-a")
	if err != nil {
		return nil, err
	}
	b, err := k.Render("tvprobe-b")
	if err != nil {
		return nil, err
	}
	if a == b {
		return k, ErrKeyWithoutTenant
	}
	return k, nil
}

// Render returns the name for tenant, which the caller has validated.
func (k *Key) Render(tenant string) (string, error) {
	var b strings.Builder
	if err := k.tmpl.Execute(&b, struct{ TenantID string }{tenant}); err != nil {
		return "", fmt.Errorf("template: %w", err)
	}
	return b.String(), nil
}
