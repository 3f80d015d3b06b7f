package profiles_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

// The account and region the template is resolved for, and the id the
// example KMS key gets (CloudFormation generates it; the profiles carry it
// as a placeholder).
const (
	account = "123456789012"
	region  = "us-east-1"
	keyID   = "1234abcd-12ab-34cd-56ef-1234567890ab"
)

// namedPolicy is one named policy document, as the evaluator takes it.
type namedPolicy struct {
	Name   string `json:"name"`
	Policy any    `json:"policy"`
}

// access is what the proof takes from deploy/cloudformation/iam.yaml: the
// access role, its policies and permissions boundary, the resource
// policies of its data, and the data's ARNs, all resolved to concrete
// values.
type access struct {
	RoleName string
	Identity []namedPolicy // the role's inline policies
	Boundary []namedPolicy // its permissions boundary
	// Attached are the managed policies attached to the role (the
	// revocation policy), in force whatever its own policy is widened to.
	Attached []namedPolicy
	Table    string // ARNs of the example data
	Bucket   string
	Key      string
	// Resource policies of the data: the bucket policy and the key policy.
	BucketPolicy any
	KeyPolicy    any
}

// loadAccess reads the access role and its data from a CloudFormation
// template.
func loadAccess(src []byte) (*access, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		return nil, err
	}
	doc, ok := testsupport.LongForm(&root).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not a mapping")
	}
	r := &resolver{params: map[string]string{}, resources: map[string]map[string]any{}}
	params, _ := doc["Parameters"].(map[string]any)
	for name, p := range params {
		p, _ := p.(map[string]any)
		if d, ok := p["Default"]; ok {
			r.params[name] = fmt.Sprint(d)
		}
	}
	resources, _ := doc["Resources"].(map[string]any)
	for name, res := range resources {
		res, _ := res.(map[string]any)
		r.resources[name] = res
	}

	a := &access{}
	role, err := r.resourceOfType("AccessRole", "AWS::IAM::Role")
	if err != nil {
		return nil, err
	}
	if a.RoleName, err = r.str(role["RoleName"]); err != nil {
		return nil, fmt.Errorf("AccessRole.RoleName: %w", err)
	}
	inline, _ := role["Policies"].([]any)
	for i, p := range inline {
		p, _ := p.(map[string]any)
		doc, err := r.resolve(p["PolicyDocument"])
		if err != nil {
			return nil, fmt.Errorf("AccessRole.Policies[%d]: %w", i, err)
		}
		name, _ := p["PolicyName"].(string)
		a.Identity = append(a.Identity, namedPolicy{Name: name, Policy: doc})
	}
	if len(a.Identity) == 0 {
		return nil, fmt.Errorf("AccessRole has no inline policies")
	}
	// Managed policies of the template are read; any other would grant
	// what the proof never sees: refuse it rather than prove too little.
	arns, _ := role["ManagedPolicyArns"].([]any)
	for i, arn := range arns {
		m, _ := arn.(map[string]any)
		name, _ := m["Ref"].(string)
		props, err := r.resourceOfType(name, "AWS::IAM::ManagedPolicy")
		if len(m) != 1 || err != nil {
			return nil, fmt.Errorf("AccessRole.ManagedPolicyArns[%d] %v: not a managed policy of the template, which the proof does not read", i, arn)
		}
		doc, err := r.resolve(props["PolicyDocument"])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		a.Attached = append(a.Attached, namedPolicy{Name: name, Policy: doc})
	}
	for name, res := range r.resources {
		props, _ := res["Properties"].(map[string]any)
		switch res["Type"] {
		case "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy":
			for _, field := range []string{"Roles", "RoleName"} {
				if strings.Contains(fmt.Sprint(props[field]), "AccessRole") {
					return nil, fmt.Errorf("%s attaches a policy to AccessRole, which the proof does not read", name)
				}
			}
		}
	}
	ref, _ := role["PermissionsBoundary"].(map[string]any)
	boundaryName, _ := ref["Ref"].(string)
	boundary, err := r.resourceOfType(boundaryName, "AWS::IAM::ManagedPolicy")
	if err != nil {
		return nil, fmt.Errorf("AccessRole.PermissionsBoundary: %w", err)
	}
	doc2, err := r.resolve(boundary["PolicyDocument"])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", boundaryName, err)
	}
	a.Boundary = []namedPolicy{{Name: boundaryName, Policy: doc2}}

	for _, d := range []struct {
		logical, typ string
		arn          *string
	}{
		{"Table", "AWS::DynamoDB::Table", &a.Table},
		{"Bucket", "AWS::S3::Bucket", &a.Bucket},
		{"TenantKey", "AWS::KMS::Key", &a.Key},
	} {
		if _, err := r.resourceOfType(d.logical, d.typ); err != nil {
			return nil, err
		}
		if *d.arn, err = r.arn(d.logical); err != nil {
			return nil, err
		}
	}
	key, _ := r.resourceOfType("TenantKey", "AWS::KMS::Key")
	if a.KeyPolicy, err = r.resolve(key["KeyPolicy"]); err != nil {
		return nil, fmt.Errorf("TenantKey.KeyPolicy: %w", err)
	}
	for name, res := range r.resources {
		props, _ := res["Properties"].(map[string]any)
		if res["Type"] != "AWS::S3::BucketPolicy" || !equalJSON(props["Bucket"], map[string]any{"Ref": "Bucket"}) {
			continue
		}
		if a.BucketPolicy, err = r.resolve(props["PolicyDocument"]); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return a, nil
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// resolver resolves the intrinsic functions the access role's part of the
// template uses (Ref, Fn::GetAtt, Fn::Sub) for the parameters' defaults.
// Anything else fails: the proof must not guess.
type resolver struct {
	params    map[string]string
	resources map[string]map[string]any
}

func (r *resolver) resourceOfType(logical, typ string) (map[string]any, error) {
	res, ok := r.resources[logical]
	if !ok || res["Type"] != typ {
		return nil, fmt.Errorf("no %s %s in the template", typ, logical)
	}
	if c, ok := res["Condition"]; ok {
		return nil, fmt.Errorf("%s exists only under condition %v", logical, c)
	}
	props, _ := res["Properties"].(map[string]any)
	return props, nil
}

func (r *resolver) resolve(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		if len(v) == 1 {
			for fn, arg := range v {
				switch fn {
				case "Ref":
					name, _ := arg.(string)
					return r.ref(name)
				case "Fn::GetAtt":
					l, _ := arg.([]any)
					if len(l) != 2 || l[1] != "Arn" {
						return nil, fmt.Errorf("Fn::GetAtt %v: only <resource>.Arn is known to the proof", arg)
					}
					name, _ := l[0].(string)
					return r.arn(name)
				case "Fn::Sub":
					return r.sub(arg)
				}
				if strings.HasPrefix(fn, "Fn::") || fn == "Condition" {
					return nil, fmt.Errorf("%s is not known to the proof's resolver", fn)
				}
			}
		}
		out := map[string]any{}
		for k, e := range v {
			x, err := r.resolve(e)
			if err != nil {
				return nil, err
			}
			out[k] = x
		}
		return out, nil
	case []any:
		out := make([]any, 0, len(v))
		for _, e := range v {
			x, err := r.resolve(e)
			if err != nil {
				return nil, err
			}
			out = append(out, x)
		}
		return out, nil
	}
	return v, nil
}

func (r *resolver) str(v any) (string, error) {
	x, err := r.resolve(v)
	if err != nil {
		return "", err
	}
	s, ok := x.(string)
	if !ok {
		return "", fmt.Errorf("%v is not a string", v)
	}
	return s, nil
}

// ref is what Ref returns: a pseudo parameter, a parameter's default, or a
// resource's physical id.
func (r *resolver) ref(name string) (string, error) {
	switch name {
	case "AWS::AccountId":
		return account, nil
	case "AWS::Region":
		return region, nil
	case "AWS::Partition":
		return "aws", nil
	}
	if p, ok := r.params[name]; ok {
		return p, nil
	}
	res, ok := r.resources[name]
	if !ok {
		return "", fmt.Errorf("Ref %s: no such parameter or resource", name)
	}
	props, _ := res["Properties"].(map[string]any)
	switch res["Type"] {
	case "AWS::IAM::Role":
		return r.str(props["RoleName"])
	case "AWS::DynamoDB::Table":
		return r.str(props["TableName"])
	case "AWS::S3::Bucket":
		return r.str(props["BucketName"])
	case "AWS::KMS::Key":
		return keyID, nil
	case "AWS::IAM::ManagedPolicy":
		if n, ok := props["ManagedPolicyName"]; ok {
			named, err := r.str(n)
			if err != nil {
				return "", err
			}
			name = named
		}
		return "arn:aws:iam::" + account + ":policy/" + name, nil
	}
	return "", fmt.Errorf("Ref %s: the physical id of a %v is not known to the proof", name, res["Type"])
}

// arn is what Fn::GetAtt <resource>.Arn returns.
func (r *resolver) arn(name string) (string, error) {
	res, ok := r.resources[name]
	if !ok {
		return "", fmt.Errorf("Fn::GetAtt %s.Arn: no such resource", name)
	}
	id, err := r.ref(name)
	if err != nil {
		return "", err
	}
	switch res["Type"] {
	case "AWS::IAM::Role":
		return "arn:aws:iam::" + account + ":role/" + id, nil
	case "AWS::DynamoDB::Table":
		return "arn:aws:dynamodb:" + region + ":" + account + ":table/" + id, nil
	case "AWS::S3::Bucket":
		return "arn:aws:s3:::" + id, nil
	case "AWS::KMS::Key":
		return "arn:aws:kms:" + region + ":" + account + ":key/" + id, nil
	}
	return "", fmt.Errorf("Fn::GetAtt %s.Arn: the ARN of a %v is not known to the proof", name, res["Type"])
}

var subVariable = regexp.MustCompile(`\$\{([^}]*)\}`)

// sub resolves Fn::Sub: "text" or ["text", {local variables}]. ${!x} is
// the literal ${x}, as IAM policy variables are written.
func (r *resolver) sub(arg any) (string, error) {
	text, local := arg, map[string]any{}
	if l, ok := arg.([]any); ok && len(l) == 2 {
		text = l[0]
		local, _ = l[1].(map[string]any)
	}
	s, ok := text.(string)
	if !ok {
		return "", fmt.Errorf("Fn::Sub %v: not a string", arg)
	}
	var errs []error
	out := subVariable.ReplaceAllStringFunc(s, func(m string) string {
		name := m[2 : len(m)-1]
		if strings.HasPrefix(name, "!") {
			return "${" + name[1:] + "}"
		}
		var v string
		var err error
		if l, ok := local[name]; ok {
			v, err = r.str(l)
		} else if res, attr, ok := strings.Cut(name, "."); ok {
			if attr != "Arn" {
				err = fmt.Errorf("Fn::Sub ${%s}: only <resource>.Arn is known to the proof", name)
			} else {
				v, err = r.arn(res)
			}
		} else {
			v, err = r.ref(name)
		}
		if err != nil {
			errs = append(errs, err)
		}
		return v
	})
	if len(errs) > 0 {
		return "", errs[0]
	}
	return out, nil
}
