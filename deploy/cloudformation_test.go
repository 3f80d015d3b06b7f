package deploy_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const iamTemplate = "cloudformation/iam.yaml"

// template is a CloudFormation template with its short-form intrinsics
// (!Ref, !GetAtt, !Sub, …) turned into their long form, so that a test
// compares plain values.
type template struct {
	Resources map[string]resource
}

type resource struct {
	Type       string
	Properties map[string]any
}

func loadTemplate(t *testing.T) template {
	t.Helper()
	b, err := os.ReadFile(iamTemplate)
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		t.Fatalf("%s: %v", iamTemplate, err)
	}
	doc, ok := longForm(&root).(map[string]any)
	if !ok {
		t.Fatalf("%s is not a mapping", iamTemplate)
	}
	var tpl template
	raw, _ := json.Marshal(doc)
	if err := json.Unmarshal(raw, &tpl); err != nil {
		t.Fatal(err)
	}
	if len(tpl.Resources) == 0 {
		t.Fatalf("%s has no resources", iamTemplate)
	}
	return tpl
}

// longForm decodes a YAML node, writing CloudFormation's short-form tags as
// the long form: !Ref X is {"Ref": X}, !GetAtt A.B is {"Fn::GetAtt": [A, B]},
// !Name V is {"Fn::Name": V}.
func longForm(n *yaml.Node) any {
	if tag := n.Tag; strings.HasPrefix(tag, "!") && !strings.HasPrefix(tag, "!!") {
		plain := *n
		plain.Tag = ""
		v := longForm(&plain)
		switch name := tag[1:]; name {
		case "Ref":
			return map[string]any{"Ref": v}
		case "GetAtt":
			if s, ok := v.(string); ok {
				res, attr, _ := strings.Cut(s, ".")
				return map[string]any{"Fn::GetAtt": []any{res, attr}}
			}
			return map[string]any{"Fn::GetAtt": v}
		default:
			return map[string]any{"Fn::" + name: v}
		}
	}
	switch n.Kind {
	case yaml.DocumentNode:
		return longForm(n.Content[0])
	case yaml.AliasNode:
		return longForm(n.Alias)
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[n.Content[i].Value] = longForm(n.Content[i+1])
		}
		return m
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			s = append(s, longForm(c))
		}
		return s
	default:
		var v any
		_ = n.Decode(&v)
		return v
	}
}

// statement is one IAM policy statement.
type statement struct {
	Sid          string
	Effect       string
	Principal    any
	NotPrincipal any
	Action       any
	NotAction    any
	Resource     any
	NotResource  any
	Condition    any
}

// statements reads a policy document's statements.
func statements(t *testing.T, doc any) []statement {
	t.Helper()
	raw, _ := json.Marshal(doc)
	var d struct{ Statement json.RawMessage }
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("policy document %s: %v", raw, err)
	}
	var list []statement
	if err := json.Unmarshal(d.Statement, &list); err != nil {
		var one statement
		if err := json.Unmarshal(d.Statement, &one); err != nil {
			t.Fatalf("statements %s: %v", d.Statement, err)
		}
		list = []statement{one}
	}
	return list
}

// strs reads a string or a list of strings; anything else is nil.
func strs(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil
			}
			out = append(out, s)
		}
		return out
	}
	return nil
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func getAtt(resourceName, attr string) map[string]any {
	return map[string]any{"Fn::GetAtt": []any{resourceName, attr}}
}

func ref(name string) map[string]any { return map[string]any{"Ref": name} }

// attachedTo collects every policy document attached to the role named
// logical: inline policies, separate role policies, and managed policies.
func attachedTo(t *testing.T, tpl template, logical string) (docs []any, managed []any) {
	t.Helper()
	r := tpl.Resources[logical]
	inline, _ := r.Properties["Policies"].([]any)
	for _, p := range inline {
		docs = append(docs, p.(map[string]any)["PolicyDocument"])
	}
	if arns, ok := r.Properties["ManagedPolicyArns"].([]any); ok {
		managed = append(managed, arns...)
	}
	for _, r := range tpl.Resources {
		switch r.Type {
		case "AWS::IAM::RolePolicy":
			if reflect.DeepEqual(r.Properties["RoleName"], ref(logical)) {
				docs = append(docs, r.Properties["PolicyDocument"])
			}
		case "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy":
			roles, _ := r.Properties["Roles"].([]any)
			if slices.ContainsFunc(roles, func(v any) bool { return reflect.DeepEqual(v, ref(logical)) }) {
				docs = append(docs, r.Properties["PolicyDocument"])
			}
		}
	}
	return docs, managed
}

// role checks that logical is an IAM role of the template and returns it.
func role(t *testing.T, tpl template, logical string) string {
	t.Helper()
	if r, ok := tpl.Resources[logical]; !ok || r.Type != "AWS::IAM::Role" {
		t.Fatalf("no IAM role %s in %s", logical, iamTemplate)
	}
	return logical
}

func TestCloudFormationPassesCfnLint(t *testing.T) {
	lint, err := exec.LookPath("cfn-lint")
	if err != nil {
		t.Fatalf("cfn-lint is needed to lint %s (pip install cfn-lint): %v", iamTemplate, err)
	}
	out, err := exec.Command(lint, iamTemplate).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("cfn-lint %s: %v\n%s", iamTemplate, err, out)
	}
}

func TestServiceRoleMayOnlyAssumeAndTagTheAccessRole(t *testing.T) {
	tpl := loadTemplate(t)
	service, access := role(t, tpl, "ServiceRole"), role(t, tpl, "AccessRole")
	docs, managed := attachedTo(t, tpl, service)
	if len(managed) > 0 {
		t.Errorf("%s has managed policies %v", service, managed)
	}
	var all []statement
	for _, d := range docs {
		all = append(all, statements(t, d)...)
	}
	if len(all) != 1 {
		t.Fatalf("%s has %d statements, want exactly one: %+v", service, len(all), all)
	}
	s := all[0]
	if s.Effect != "Allow" || s.NotAction != nil || s.NotResource != nil || s.Condition != nil {
		t.Errorf("statement %+v: want a plain Allow", s)
	}
	if got := sorted(strs(s.Action)); !slices.Equal(got, []string{"sts:AssumeRole", "sts:TagSession"}) {
		t.Errorf("actions %v, want exactly sts:AssumeRole and sts:TagSession", s.Action)
	}
	if !reflect.DeepEqual(s.Resource, getAtt(access, "Arn")) {
		t.Errorf("resource %v, want only the access role (%s.Arn)", s.Resource, access)
	}
}

func TestAccessRoleTrustsOnlyTheServiceRole(t *testing.T) {
	tpl := loadTemplate(t)
	service, access := role(t, tpl, "ServiceRole"), role(t, tpl, "AccessRole")
	trust := statements(t, tpl.Resources[access].Properties["AssumeRolePolicyDocument"])
	if len(trust) == 0 {
		t.Fatal("no trust statements")
	}
	for i, s := range trust {
		if s.Effect != "Allow" || s.NotPrincipal != nil || s.NotAction != nil {
			t.Errorf("trust[%d] %+v: want a plain Allow", i, s)
		}
		if !reflect.DeepEqual(s.Principal, map[string]any{"AWS": getAtt(service, "Arn")}) {
			t.Errorf("trust[%d] principal %v, want only %s", i, s.Principal, service)
		}
		if got := sorted(strs(s.Action)); !slices.Equal(got, []string{"sts:AssumeRole", "sts:TagSession"}) {
			t.Errorf("trust[%d] actions %v, want sts:AssumeRole and sts:TagSession", i, s.Action)
		}
		// The only condition allowed is the ExternalId, when one is set.
		if s.Condition != nil {
			raw, _ := json.Marshal(s.Condition)
			want := `{"Fn::If":["HasExternalId",{"StringEquals":{"sts:ExternalId":{"Ref":"ExternalId"}}},{"Ref":"AWS::NoValue"}]}`
			if string(raw) != want {
				t.Errorf("trust[%d] condition %s, want only the optional ExternalId", i, raw)
			}
		}
	}
}

func TestAccessRoleIsBoundedByTheDataAndScopedByTheTenantTag(t *testing.T) {
	tpl := loadTemplate(t)
	access := role(t, tpl, "AccessRole")
	props := tpl.Resources[access].Properties
	boundaryRef, ok := props["PermissionsBoundary"].(map[string]any)
	if !ok {
		t.Fatalf("%s has no permissions boundary", access)
	}
	boundary := tpl.Resources[boundaryRef["Ref"].(string)]
	if boundary.Type != "AWS::IAM::ManagedPolicy" {
		t.Fatalf("permissions boundary %v is not a managed policy of the template", boundaryRef)
	}
	dataResources := []any{getAtt("Table", "Arn"), getAtt("Bucket", "Arn"), map[string]any{"Fn::Sub": "${Bucket.Arn}/*"}}
	data := map[string]bool{}
	for _, s := range statements(t, boundary.Properties["PolicyDocument"]) {
		resources, ok := s.Resource.([]any)
		if !ok {
			resources = []any{s.Resource}
		}
		for _, r := range resources {
			if !slices.ContainsFunc(dataResources, func(d any) bool { return reflect.DeepEqual(r, d) }) {
				t.Errorf("boundary statement %s reaches beyond the table and the bucket: %v", s.Sid, r)
			}
		}
		if s.Effect != "Allow" || s.NotAction != nil || s.NotResource != nil {
			t.Errorf("boundary statement %s: want a plain Allow", s.Sid)
		}
		for _, a := range strs(s.Action) {
			if strings.Contains(a, "*") || !strings.HasPrefix(a, "dynamodb:") && !strings.HasPrefix(a, "s3:") {
				t.Errorf("boundary statement %s allows %s", s.Sid, a)
			}
			data[a] = true
		}
	}
	docs, managed := attachedTo(t, tpl, access)
	if len(managed) > 0 {
		t.Errorf("%s has managed policies %v", access, managed)
	}
	for _, d := range docs {
		for _, s := range statements(t, d) {
			if s.Effect != "Allow" {
				continue
			}
			for _, a := range strs(s.Action) {
				if !data[a] {
					t.Errorf("statement %s allows %s, which the boundary does not", s.Sid, a)
				}
			}
			raw, _ := json.Marshal(map[string]any{"r": s.Resource, "c": s.Condition})
			if !strings.Contains(string(raw), "aws:PrincipalTag/TenantID") {
				t.Errorf("statement %s is not scoped by the session's TenantID tag: %s", s.Sid, raw)
			}
			if slices.Contains(strs(s.Action), "dynamodb:Scan") {
				t.Errorf("statement %s allows Scan, which carries no leading keys", s.Sid)
			}
		}
	}
}

func TestExampleDataIsEncryptedAndPrivate(t *testing.T) {
	tpl := loadTemplate(t)
	var buckets, tables int
	for name, r := range tpl.Resources {
		raw, _ := json.Marshal(r.Properties)
		switch r.Type {
		case "AWS::S3::Bucket":
			buckets++
			var b struct {
				BucketEncryption struct {
					ServerSideEncryptionConfiguration []struct {
						ServerSideEncryptionByDefault struct{ SSEAlgorithm string }
					}
				}
				PublicAccessBlockConfiguration map[string]bool
			}
			_ = json.Unmarshal(raw, &b)
			enc := b.BucketEncryption.ServerSideEncryptionConfiguration
			if len(enc) == 0 || enc[0].ServerSideEncryptionByDefault.SSEAlgorithm == "" {
				t.Errorf("bucket %s is not encrypted by default", name)
			}
			for _, k := range []string{"BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"} {
				if !b.PublicAccessBlockConfiguration[k] {
					t.Errorf("bucket %s: %s not set", name, k)
				}
			}
		case "AWS::DynamoDB::Table":
			tables++
			var tb struct{ SSESpecification struct{ SSEEnabled bool } }
			_ = json.Unmarshal(raw, &tb)
			if !tb.SSESpecification.SSEEnabled {
				t.Errorf("table %s: SSESpecification.SSEEnabled not set", name)
			}
		}
	}
	if buckets != 1 || tables != 1 {
		t.Errorf("%d buckets and %d tables, want the example one of each", buckets, tables)
	}
}
