package deploy_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tokenvendor/tokenvendor/internal/revoke"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

const iamTemplate = "cloudformation/iam.yaml"

// template is a CloudFormation template with its short-form intrinsics
// (!Ref, !GetAtt, !Sub, …) turned into their long form, so that a test
// compares plain values.
type template struct {
	Parameters map[string]struct {
		Type           string
		Default        any
		AllowedPattern any
	}
	Rules map[string]struct {
		RuleCondition any
		Assertions    []struct {
			Assert            any
			AssertDescription string
		}
	}
	Conditions map[string]any
	Resources  map[string]resource
	Outputs    map[string]struct {
		Condition   string
		Description string
		Value       any
	}
}

type resource struct {
	Type                string
	Condition           string
	DeletionPolicy      string
	UpdateReplacePolicy string
	Properties          map[string]any
}

func loadTemplate(t *testing.T) template { return loadTemplateFile(t, iamTemplate) }

// loadTemplateFile reads the CloudFormation template at path.
func loadTemplateFile(t *testing.T, path string) template {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	doc, ok := testsupport.LongForm(&root).(map[string]any)
	if !ok {
		t.Fatalf("%s is not a mapping", path)
	}
	var tpl template
	raw, _ := json.Marshal(doc)
	if err := json.Unmarshal(raw, &tpl); err != nil {
		t.Fatal(err)
	}
	if len(tpl.Resources) == 0 {
		t.Fatalf("%s has no resources", path)
	}
	return tpl
}

// stack is the template as CloudFormation would create it for some
// parameters: conditions evaluated, resources and outputs whose condition
// is false left out, Fn::If resolved and AWS::NoValue removed.
type stack struct {
	name       string
	params     map[string]string
	conditions map[string]bool
	Resources  map[string]resource
	Outputs    map[string]output
}

type output struct {
	Description string
	Value       any
}

// stacks are the parameter sets the IAM tests check; each must pass the
// template's rules.
var stacks = []map[string]string{
	{}, // the defaults: EKS, the standalone service only, SourceIdentity on
	{"SourceIdentity": "false"},
	{"Sidecars": "PodIdentity", "ClusterName": "prod"},
	{"Sidecars": "PodIdentity", "ClusterName": "prod", "SourceIdentity": "false"},
	{"Sidecars": "PodIdentity", "ClusterName": "prod", "ExternalId": "eks-external-id-0123456789abcdef0123"},
	{"Platform": "ECS", "ExternalId": "ecs-external-id-0123456789abcdef0123"},
	{"Platform": "ECS", "ExternalId": "ecs-external-id-0123456789abcdef0123", "SourceIdentity": "false"},
	redisParams,
	with(redisParams, "RedisNodes", "1"),
	with(redisParams, "Platform", "ECS", "ExternalId", "ecs-external-id-0123456789abcdef0123"),
	tenantStoreParams,
	with(tenantStoreParams, "SourceIdentity", "false"),
	with(tenantStoreParams, "Sidecars", "PodIdentity", "ClusterName", "prod"),
	with(tenantStoreParams, "Platform", "ECS", "ExternalId", "ecs-external-id-0123456789abcdef0123"),
	with(redisParams, "TenantStore", "DynamoDB"),
}

// tenantStoreParams create the tenant store.
var tenantStoreParams = map[string]string{"TenantStore": "DynamoDB"}

// hasTenantStore reports whether the stack was asked for the tenant store.
func hasTenantStore(st stack) bool { return st.params["TenantStore"] == "DynamoDB" }

// redisParams create the Redis the standalone replicas share.
var redisParams = map[string]string{
	"Redis":                  "ElastiCache",
	"RedisVpcId":             "vpc-0123456789abcdef0",
	"RedisSubnetIds":         "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
	"ServiceSecurityGroupId": "sg-0123456789abcdef0",
}

// with returns a copy of params with the name, value pairs kv set.
func with(params map[string]string, kv ...string) map[string]string {
	out := maps.Clone(params)
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// deploy evaluates the template for the parameters (the rest at their
// defaults), failing when a rule refuses them.
func deploy(t *testing.T, tpl template, params map[string]string) stack {
	t.Helper()
	s, err := plan(t, tpl, params)
	if err != nil {
		t.Fatalf("parameters %s: %v", s.name, err)
	}
	return s
}

// plan evaluates the template for the parameters, or returns the first
// rule that refuses them.
func plan(t *testing.T, tpl template, params map[string]string) (stack, error) {
	t.Helper()
	s := stack{name: fmt.Sprint(params), params: map[string]string{}, conditions: map[string]bool{}, Resources: map[string]resource{}, Outputs: map[string]output{}}
	for name, p := range tpl.Parameters {
		s.params[name] = fmt.Sprint(p.Default)
		if p.Default == nil {
			s.params[name] = ""
		}
	}
	for name, v := range params {
		if _, ok := tpl.Parameters[name]; !ok {
			t.Fatalf("no parameter %s in the template", name)
		}
		s.params[name] = v
	}
	for name := range tpl.Conditions {
		s.condition(t, tpl, name)
	}
	if err := s.checkRules(t, tpl); err != nil {
		return s, err
	}
	for name, r := range tpl.Resources {
		if r.Condition != "" && !s.condition(t, tpl, r.Condition) {
			continue
		}
		props, _ := s.resolve(t, r.Properties)
		r.Properties, _ = props.(map[string]any)
		s.Resources[name] = r
	}
	for name, o := range tpl.Outputs {
		if o.Condition != "" && !s.condition(t, tpl, o.Condition) {
			continue
		}
		v, _ := s.resolve(t, o.Value)
		s.Outputs[name] = output{Description: o.Description, Value: v}
	}
	return s, nil
}

// checkRules returns the first failing assertion of a rule that applies.
func (s stack) checkRules(t *testing.T, tpl template) error {
	t.Helper()
	for name, rule := range tpl.Rules {
		if rule.RuleCondition != nil && !s.eval(t, tpl, rule.RuleCondition) {
			continue
		}
		for _, a := range rule.Assertions {
			if !s.eval(t, tpl, a.Assert) {
				return fmt.Errorf("rule %s: %s", name, a.AssertDescription)
			}
		}
	}
	return nil
}

func (s stack) condition(t *testing.T, tpl template, name string) bool {
	t.Helper()
	if v, ok := s.conditions[name]; ok {
		return v
	}
	def, ok := tpl.Conditions[name]
	if !ok {
		t.Fatalf("no condition %s in the template", name)
	}
	v := s.eval(t, tpl, def)
	s.conditions[name] = v
	return v
}

// eval evaluates a condition function.
func (s stack) eval(t *testing.T, tpl template, v any) bool {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		t.Fatalf("not a condition function: %v", v)
	}
	for fn, arg := range m {
		args, _ := arg.([]any)
		switch fn {
		case "Fn::Equals":
			return len(args) == 2 && s.value(t, args[0]) == s.value(t, args[1])
		case "Fn::Not":
			return !s.eval(t, tpl, args[0])
		case "Fn::And", "Fn::Or":
			and := fn == "Fn::And"
			for _, a := range args {
				if s.eval(t, tpl, a) != and {
					return !and
				}
			}
			return and
		case "Condition", "Fn::Condition":
			return s.condition(t, tpl, arg.(string))
		case "Fn::Contains":
			// A CommaDelimitedList parameter is its values joined by commas.
			return len(args) == 2 && slices.Contains(strings.Split(s.value(t, args[0]), ","), s.value(t, args[1]))
		}
		t.Fatalf("condition function %s is not known to the test", fn)
	}
	return false
}

func (s stack) value(t *testing.T, v any) string {
	t.Helper()
	switch v := v.(type) {
	case string:
		return v
	case map[string]any:
		if name, ok := v["Ref"].(string); ok {
			if p, ok := s.params[name]; ok {
				return p
			}
		}
		// Fn::Join of a CommaDelimitedList parameter: its values joined.
		if args, ok := v["Fn::Join"].([]any); ok && len(args) == 2 {
			if sep, ok := args[0].(string); ok {
				return strings.ReplaceAll(s.value(t, args[1]), ",", sep)
			}
		}
	}
	t.Fatalf("cannot evaluate %v", v)
	return ""
}

// resolve resolves Fn::If and drops AWS::NoValue; keep is false for a
// value that is dropped.
func (s stack) resolve(t *testing.T, v any) (out any, keep bool) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		if args, ok := v["Fn::If"].([]any); ok && len(v) == 1 && len(args) == 3 {
			if s.conditions[args[0].(string)] {
				return s.resolve(t, args[1])
			}
			return s.resolve(t, args[2])
		}
		if len(v) == 1 && v["Ref"] == "AWS::NoValue" {
			return nil, false
		}
		m := map[string]any{}
		for k, e := range v {
			if r, ok := s.resolve(t, e); ok {
				m[k] = r
			}
		}
		return m, true
	case []any:
		l := []any{}
		for _, e := range v {
			if r, ok := s.resolve(t, e); ok {
				l = append(l, r)
			}
		}
		return l, true
	}
	return v, true
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
func attachedTo(st stack, logical string) (docs []any, managed []any) {
	r := st.Resources[logical]
	inline, _ := r.Properties["Policies"].([]any)
	for _, p := range inline {
		docs = append(docs, p.(map[string]any)["PolicyDocument"])
	}
	if arns, ok := r.Properties["ManagedPolicyArns"].([]any); ok {
		managed = append(managed, arns...)
	}
	for _, r := range st.Resources {
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

// role checks that logical is an IAM role of the stack and returns it.
func role(t *testing.T, st stack, logical string) string {
	t.Helper()
	if r, ok := st.Resources[logical]; !ok || r.Type != "AWS::IAM::Role" {
		t.Fatalf("%s: no IAM role %s in %s", st.name, logical, iamTemplate)
	}
	return logical
}

// serviceRoles are the roles tokenvendor runs as: the standalone (or ECS)
// service role, which may vend any tenant, and on EKS the sidecars' Pod
// Identity role, which may vend only its pod's namespace.
func serviceRoles(t *testing.T, st stack) []string {
	t.Helper()
	roles := []string{role(t, st, "ServiceRole")}
	_, sidecar := st.Resources["SidecarRole"]
	if want := st.params["Platform"] == "EKS" && st.params["Sidecars"] == "PodIdentity"; sidecar != want {
		t.Errorf("%s: SidecarRole present %v, want %v (EKS with Pod Identity sidecars only)", st.name, sidecar, want)
	}
	if sidecar {
		roles = append(roles, role(t, st, "SidecarRole"))
	}
	return roles
}

// assumeActions are the actions tokenvendor's roles need on the access
// role: AssumeRole, TagSession for the TenantID tag and, for
// session.source_identity, SetSourceIdentity.
// assumeActions are what role may do on the access role: assume it and tag
// the session, and name the caller (SourceIdentity) when that is on, except
// for the sidecar role, which a pod could use to name anyone.
func assumeActions(st stack, role string) []string {
	actions := []string{"sts:AssumeRole", "sts:TagSession"}
	if st.params["SourceIdentity"] == "true" && role != "SidecarRole" {
		actions = append(actions, "sts:SetSourceIdentity")
	}
	return sorted(actions)
}

// permissions is everything role may do, as IAM would read its policies:
// each action it is allowed, with every resource it is allowed on. Every
// statement must be a plain Allow (no NotAction, NotResource or Condition)
// and the role may have no managed policy or boundary, or the test could
// not tell what it grants.
func permissions(t *testing.T, st stack, role string) map[string][]any {
	t.Helper()
	docs, managed := attachedTo(st, role)
	if len(managed) > 0 || st.Resources[role].Properties["PermissionsBoundary"] != nil {
		t.Errorf("%s: %s has managed policies %v or a boundary", st.name, role, managed)
	}
	granted := map[string][]any{}
	for _, d := range docs {
		for _, s := range statements(t, d) {
			if s.Effect != "Allow" || s.NotAction != nil || s.NotResource != nil || s.Condition != nil || s.Principal != nil {
				raw, _ := json.Marshal(s)
				t.Errorf("%s: %s statement %s: want a plain Allow", st.name, role, raw)
				continue
			}
			resources, ok := s.Resource.([]any)
			if !ok {
				resources = []any{s.Resource}
			}
			for _, a := range strs(s.Action) {
				granted[a] = append(granted[a], resources...)
			}
		}
	}
	return granted
}

// checkPermissions fails unless role may do exactly what want says: each
// action on its one resource, and nothing else.
func checkPermissions(t *testing.T, st stack, role string, want map[string]any) {
	t.Helper()
	got := permissions(t, st, role)
	for a, r := range got {
		w, ok := want[a]
		if !ok {
			t.Errorf("%s: %s may %s on %v, which it has no business doing", st.name, role, a, r)
			continue
		}
		if !reflect.DeepEqual(r, []any{w}) {
			raw, _ := json.Marshal(r)
			exp, _ := json.Marshal(w)
			t.Errorf("%s: %s may %s on %s, want on %s alone", st.name, role, a, raw, exp)
		}
	}
	for a := range want {
		if _, ok := got[a]; !ok {
			t.Errorf("%s: %s may not %s, which it needs", st.name, role, a)
		}
	}
}

func TestPermissionsReadsEveryStatement(t *testing.T) {
	st := stack{name: "fake", params: map[string]string{}, Resources: map[string]resource{
		"R": {Type: "AWS::IAM::Role", Properties: map[string]any{"Policies": []any{map[string]any{"PolicyDocument": map[string]any{
			"Statement": []any{
				map[string]any{"Effect": "Allow", "Action": "a:One", "Resource": "x"},
				map[string]any{"Effect": "Allow", "Action": []any{"a:One", "a:Two"}, "Resource": []any{"y", "z"}},
			}}}}}},
		"P": {Type: "AWS::IAM::RolePolicy", Properties: map[string]any{"RoleName": ref("R"), "PolicyDocument": map[string]any{
			"Statement": map[string]any{"Effect": "Allow", "Action": "a:Three", "Resource": "w"}}}},
	}}
	got := permissions(t, st, "R")
	want := map[string][]any{"a:One": {"x", "y", "z"}, "a:Two": {"y", "z"}, "a:Three": {"w"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("permissions = %v, want %v", got, want)
	}
}

func TestCloudFormationPassesCfnLint(t *testing.T) { cfnLint(t, iamTemplate) }

// cfnLint fails the test unless cfn-lint passes the template at path
// without a word: no check is ignored.
func cfnLint(t *testing.T, path string) {
	t.Helper()
	lint, err := exec.LookPath("cfn-lint")
	if err != nil {
		t.Fatalf("cfn-lint is needed to lint %s (pip install cfn-lint): %v", path, err)
	}
	out, err := exec.Command(lint, path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("cfn-lint %s: %v\n%s", path, err, out)
	}
}

func TestExternalIDIsMandatoryOnECS(t *testing.T) {
	tpl := loadTemplate(t)
	for _, tc := range []struct {
		name   string
		params map[string]string
		ok     bool
	}{
		{"ECS without an ExternalId", map[string]string{"Platform": "ECS"}, false},
		{"ECS with an ExternalId", map[string]string{"Platform": "ECS", "ExternalId": "ecs-external-id-0123456789abcdef0123"}, true},
		{"EKS without an ExternalId", map[string]string{"Platform": "EKS"}, true},
		{"EKS sidecars without a cluster", map[string]string{"Platform": "EKS", "Sidecars": "PodIdentity"}, false},
		{"EKS sidecars pinned to a cluster", map[string]string{"Platform": "EKS", "Sidecars": "PodIdentity", "ClusterName": "prod"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := stack{name: tc.name, params: map[string]string{}, conditions: map[string]bool{}}
			for name, p := range tpl.Parameters {
				st.params[name] = fmt.Sprint(p.Default)
			}
			maps.Copy(st.params, tc.params)
			if err := st.checkRules(t, tpl); (err == nil) != tc.ok {
				t.Errorf("rules: %v, want accepted %v", err, tc.ok)
			}
		})
	}
}

// The service role may assume and tag the access role and, with the tenant
// store, read that table; the sidecar role may only assume and tag. Neither
// may write the tenant store: a compromised replica must not be able to
// lift a suspension.
func TestServiceRolesMayOnlyAssumeTheAccessRoleAndReadTheTenantStore(t *testing.T) {
	tpl := loadTemplate(t)
	for _, params := range stacks {
		st := deploy(t, tpl, params)
		access := role(t, st, "AccessRole")
		for _, service := range serviceRoles(t, st) {
			want := map[string]any{}
			for _, a := range assumeActions(st, service) {
				want[a] = getAtt(access, "Arn")
			}
			if service == "ServiceRole" && hasTenantStore(st) {
				for _, a := range serviceTenantStoreActions {
					want[a] = getAtt(tenantStoreTable, "Arn")
				}
			}
			checkPermissions(t, st, service, want)
		}
	}
}

func TestAccessRoleTrustsOnlyTheServiceRolesEachWithinItsTenants(t *testing.T) {
	tpl := loadTemplate(t)
	for _, params := range stacks {
		st := deploy(t, tpl, params)
		access := role(t, st, "AccessRole")
		want := map[string]map[string]any{}
		for _, service := range serviceRoles(t, st) {
			switch service {
			case "ServiceRole":
				// Any tenant, but always one, never a path into another's
				// objects, and with the ExternalId when one is set.
				c := map[string]any{
					"Null":                      map[string]any{"aws:RequestTag/TenantID": "false"},
					"StringNotLike":             map[string]any{"aws:RequestTag/TenantID": []any{"*/*", ""}},
					"ForAllValues:StringEquals": map[string]any{"aws:TagKeys": []any{"TenantID"}},
				}
				if st.params["ExternalId"] != "" {
					c["StringEquals"] = map[string]any{"sts:ExternalId": ref("ExternalId")}
				}
				want[service] = c
			case "SidecarRole":
				// Only the tenant named like the pod's namespace, from the
				// session tag EKS Pod Identity set.
				want[service] = map[string]any{
					"Null": map[string]any{
						"aws:RequestTag/TenantID":               "false",
						"aws:PrincipalTag/kubernetes-namespace": "false",
					},
					"StringEquals":              map[string]any{"aws:RequestTag/TenantID": "${aws:PrincipalTag/kubernetes-namespace}"},
					"ForAllValues:StringEquals": map[string]any{"aws:TagKeys": []any{"TenantID"}},
				}
			}
		}
		if st.params["Platform"] == "ECS" && st.params["ExternalId"] == "" {
			t.Errorf("%s: ECS without an ExternalId passed the rules", st.name)
		}
		seen := map[string]bool{}
		for i, s := range statements(t, st.Resources[access].Properties["AssumeRolePolicyDocument"]) {
			if s.Effect != "Allow" || s.NotPrincipal != nil || s.NotAction != nil {
				t.Errorf("%s: trust[%d] %+v: want a plain Allow", st.name, i, s)
			}
			var principal string
			for service := range want {
				if reflect.DeepEqual(s.Principal, map[string]any{"AWS": getAtt(service, "Arn")}) {
					principal = service
				}
			}
			if principal == "" || seen[principal] {
				t.Errorf("%s: trust[%d] principal %v, want each of %v once", st.name, i, s.Principal, slices.Collect(maps.Keys(want)))
				continue
			}
			seen[principal] = true
			if got := sorted(strs(s.Action)); !slices.Equal(got, assumeActions(st, principal)) {
				t.Errorf("%s: trust[%d] actions %v, want exactly %v", st.name, i, s.Action, assumeActions(st, principal))
			}
			if !reflect.DeepEqual(s.Condition, want[principal]) {
				got, _ := json.Marshal(s.Condition)
				exp, _ := json.Marshal(want[principal])
				t.Errorf("%s: trust of %s: condition %s, want %s", st.name, principal, got, exp)
			}
		}
		for service := range want {
			if !seen[service] {
				t.Errorf("%s: the access role does not trust %s", st.name, service)
			}
		}
	}
}

func TestSidecarRoleIsForEKSPodIdentityAlone(t *testing.T) {
	tpl := loadTemplate(t)
	for _, params := range stacks {
		st := deploy(t, tpl, params)
		r, ok := st.Resources["SidecarRole"]
		if !ok {
			continue
		}
		// A role tag would stand in for a missing session tag in
		// aws:PrincipalTag.
		if r.Properties["Tags"] != nil {
			t.Errorf("%s: SidecarRole has tags %v", st.name, r.Properties["Tags"])
		}
		trust := statements(t, r.Properties["AssumeRolePolicyDocument"])
		if len(trust) != 1 {
			t.Fatalf("%s: SidecarRole has %d trust statements, want one", st.name, len(trust))
		}
		s := trust[0]
		if s.Effect != "Allow" || !reflect.DeepEqual(s.Principal, map[string]any{"Service": "pods.eks.amazonaws.com"}) {
			t.Errorf("%s: SidecarRole trust %+v: want an Allow for pods.eks.amazonaws.com alone", st.name, s)
		}
		if got := sorted(strs(s.Action)); !slices.Equal(got, []string{"sts:AssumeRole", "sts:TagSession"}) {
			t.Errorf("%s: SidecarRole trust actions %v", st.name, s.Action)
		}
		equals := map[string]any{"aws:SourceAccount": ref("AWS::AccountId")}
		if st.params["ClusterName"] != "" {
			equals["aws:RequestTag/eks-cluster-arn"] = map[string]any{"Fn::Sub": "arn:${AWS::Partition}:eks:${AWS::Region}:${AWS::AccountId}:cluster/${ClusterName}"}
		}
		want := map[string]any{
			"StringEquals": equals,
			"Null":         map[string]any{"aws:RequestTag/kubernetes-namespace": "false"},
		}
		if !reflect.DeepEqual(s.Condition, want) {
			t.Errorf("%s: SidecarRole trust condition %v, want %v", st.name, s.Condition, want)
		}
		var associations int
		for name, r := range st.Resources {
			if r.Type != "AWS::EKS::PodIdentityAssociation" {
				continue
			}
			associations++
			if !reflect.DeepEqual(r.Properties["RoleArn"], getAtt("SidecarRole", "Arn")) {
				t.Errorf("%s: %s associates %v, want the sidecar role", st.name, name, r.Properties["RoleArn"])
			}
		}
		if want := map[bool]int{true: 1, false: 0}[st.params["ClusterName"] != ""]; associations != want {
			t.Errorf("%s: %d Pod Identity associations, want %d", st.name, associations, want)
		}
	}
}

// The service role may tag any tenant: only the standalone Deployment's
// service account may have it, never an app's that carries the sidecar.
func TestOnlyTheStandaloneServiceAccountGetsTheServiceRole(t *testing.T) {
	tpl := loadTemplate(t)
	st := deploy(t, tpl, nil)
	trusted := strings.Split(st.params["ServiceAccounts"], ",")
	subject := func(overlay string) (string, manifest) {
		ms := renderOverlay(t, overlay)
		deployments := ofKind(ms, "Deployment")
		if len(deployments) == 0 {
			t.Fatalf("%s: no Deployment", overlay)
		}
		pod := podTemplateOf(t, deployments[0])
		return "system:serviceaccount:" + deployments[0].Metadata.Namespace + ":" + pod.Spec.ServiceAccountName, deployments[0]
	}
	standalone, _ := subject("standalone")
	if !slices.Equal(trusted, []string{standalone}) {
		t.Errorf("ServiceAccounts defaults to %v, want the standalone Deployment's %s alone", trusted, standalone)
	}
	sidecar, d := subject("sidecar")
	if slices.Contains(trusted, sidecar) {
		t.Errorf("the sidecar app's service account %s may assume the service role, which tags any tenant", sidecar)
	}
	if ns, sa := st.params["SidecarNamespace"], st.params["SidecarServiceAccount"]; "system:serviceaccount:"+ns+":"+sa != sidecar {
		t.Errorf("the example Pod Identity association is for %s/%s, the sidecar overlay runs %s (%s)", ns, sa, sidecar, d.Metadata.Name)
	}
}

// accessGrants is everything a session of the access role may ever do: each
// action with the resource (or, for Bedrock, the resources) the
// permissions boundary allows it on.
// Nothing else, and never dynamodb:Scan, which carries no leading keys.
var accessGrants = map[string]any{
	"dynamodb:GetItem":                      getAtt("Table", "Arn"),
	"dynamodb:PutItem":                      getAtt("Table", "Arn"),
	"dynamodb:UpdateItem":                   getAtt("Table", "Arn"),
	"dynamodb:DeleteItem":                   getAtt("Table", "Arn"),
	"dynamodb:Query":                        getAtt("Table", "Arn"),
	"dynamodb:BatchGetItem":                 getAtt("Table", "Arn"),
	"dynamodb:BatchWriteItem":               getAtt("Table", "Arn"),
	"s3:GetObject":                          map[string]any{"Fn::Sub": "${Bucket.Arn}/*"},
	"s3:PutObject":                          map[string]any{"Fn::Sub": "${Bucket.Arn}/*"},
	"s3:DeleteObject":                       map[string]any{"Fn::Sub": "${Bucket.Arn}/*"},
	"s3:ListBucket":                         getAtt("Bucket", "Arn"),
	"kms:Encrypt":                           getAtt("TenantKey", "Arn"),
	"kms:Decrypt":                           getAtt("TenantKey", "Arn"),
	"kms:GenerateDataKey":                   getAtt("TenantKey", "Arn"),
	"secretsmanager:GetSecretValue":         map[string]any{"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:tenant/*"},
	"secretsmanager:DescribeSecret":         map[string]any{"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:tenant/*"},
	"bedrock:InvokeModel":                   bedrockModels,
	"bedrock:InvokeModelWithResponseStream": bedrockModels,
}

// The account's application inference profiles in the stack's Region, and
// the foundation models of every Region (a profile may route to others).
var (
	inferenceProfiles = map[string]any{"Fn::Sub": "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:application-inference-profile/*"}
	foundationModels  = map[string]any{"Fn::Sub": "arn:${AWS::Partition}:bedrock:*::foundation-model/*"}
	bedrockModels     = []any{inferenceProfiles, foundationModels}
)

func TestAccessRoleIsBoundedByTheDataAndScopedByTheTenantTag(t *testing.T) {
	st := deploy(t, loadTemplate(t), nil)
	access := role(t, st, "AccessRole")
	props := st.Resources[access].Properties
	boundaryRef, ok := props["PermissionsBoundary"].(map[string]any)
	if !ok {
		t.Fatalf("%s has no permissions boundary", access)
	}
	boundary := st.Resources[boundaryRef["Ref"].(string)]
	if boundary.Type != "AWS::IAM::ManagedPolicy" {
		t.Fatalf("permissions boundary %v is not a managed policy of the template", boundaryRef)
	}
	bounded := map[string]bool{}
	for _, s := range statements(t, boundary.Properties["PolicyDocument"]) {
		if s.Effect != "Allow" || s.NotAction != nil || s.NotResource != nil || s.Condition != nil {
			t.Errorf("boundary statement %s: want a plain Allow", s.Sid)
		}
		for _, a := range strs(s.Action) {
			want, ok := accessGrants[a]
			switch {
			case !ok:
				t.Errorf("boundary statement %s allows %s, which no tenant needs", s.Sid, a)
			case !reflect.DeepEqual(s.Resource, want):
				t.Errorf("boundary statement %s allows %s on %v, want %v alone", s.Sid, a, s.Resource, want)
			case bounded[a]:
				t.Errorf("boundary allows %s twice", a)
			}
			bounded[a] = true
		}
	}
	for a := range accessGrants {
		if !bounded[a] {
			t.Errorf("boundary does not allow %s, which examples/profiles need", a)
		}
	}
	docs, managed := attachedTo(st, access)
	// The revocation policy alone, which only denies.
	if !reflect.DeepEqual(managed, []any{ref("RevocationPolicy")}) {
		t.Errorf("%s has managed policies %v, want the revocation policy alone", access, managed)
	}
	for _, d := range managedDocuments(t, st, managed) {
		for _, s := range statements(t, d) {
			if s.Effect != "Deny" {
				t.Errorf("revocation policy statement %s: effect %s, want Deny", s.Sid, s.Effect)
			}
		}
		docs = append(docs, d)
	}
	// A session of the access role without any session policy (one that
	// skipped tokenvendor) must still reach its own tenant alone: the key
	// scheme of the table (pk = TENANT#<id> or TENANT#<id>#...), the
	// bucket (<id>/...), the key (encryption context tenant=<id>), the
	// secrets (tenant/<id>/...) and the Bedrock inference profiles (tagged
	// TenantID=<id>).
	ownItems := map[string]any{
		"ForAllValues:StringLike": map[string]any{"dynamodb:LeadingKeys": []any{"TENANT#${aws:PrincipalTag/TenantID}", "TENANT#${aws:PrincipalTag/TenantID}#*"}},
		"Null":                    map[string]any{"dynamodb:LeadingKeys": "false"},
	}
	ownObjects := map[string]any{"Fn::Sub": "${Bucket.Arn}/${!aws:PrincipalTag/TenantID}/*"}
	ownPrefix := map[string]any{"StringLike": map[string]any{"s3:prefix": []any{"${aws:PrincipalTag/TenantID}/*"}}}
	ownContext := map[string]any{"StringEquals": map[string]any{"kms:EncryptionContext:tenant": "${aws:PrincipalTag/TenantID}"}}
	ownSecrets := map[string]any{"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:tenant/${!aws:PrincipalTag/TenantID}/*"}
	// Bedrock: the tenant's own application inference profiles, and models
	// only behind one of the account's profiles. A call through a profile
	// is authorized on the profile and on each model; a model called
	// directly carries no bedrock:InferenceProfileArn.
	ownProfiles := map[string]any{"StringEquals": map[string]any{"aws:ResourceTag/TenantID": "${aws:PrincipalTag/TenantID}"}}
	behindProfiles := map[string]any{"ArnLike": map[string]any{"bedrock:InferenceProfileArn": inferenceProfiles}}
	granted := map[string]bool{}
	for _, d := range docs {
		for _, s := range statements(t, d) {
			if s.Effect != "Allow" {
				continue
			}
			if s.NotAction != nil || s.NotResource != nil {
				t.Errorf("statement %s uses NotAction or NotResource", s.Sid)
			}
			for _, a := range strs(s.Action) {
				if _, ok := accessGrants[a]; !ok {
					t.Errorf("statement %s allows %s, which the boundary does not", s.Sid, a)
				}
				granted[a] = true
				var scoped bool
				switch {
				case strings.HasPrefix(a, "dynamodb:"):
					scoped = reflect.DeepEqual(s.Resource, getAtt("Table", "Arn")) && reflect.DeepEqual(s.Condition, ownItems)
				case a == "s3:ListBucket":
					scoped = reflect.DeepEqual(s.Resource, getAtt("Bucket", "Arn")) && reflect.DeepEqual(s.Condition, ownPrefix)
				case strings.HasPrefix(a, "s3:"):
					scoped = reflect.DeepEqual(s.Resource, ownObjects) && s.Condition == nil
				case strings.HasPrefix(a, "kms:"):
					scoped = reflect.DeepEqual(s.Resource, getAtt("TenantKey", "Arn")) && reflect.DeepEqual(s.Condition, ownContext)
				case strings.HasPrefix(a, "secretsmanager:"):
					scoped = reflect.DeepEqual(s.Resource, ownSecrets) && s.Condition == nil
				case strings.HasPrefix(a, "bedrock:"):
					scoped = reflect.DeepEqual(s.Resource, inferenceProfiles) && reflect.DeepEqual(s.Condition, ownProfiles) ||
						reflect.DeepEqual(s.Resource, foundationModels) && reflect.DeepEqual(s.Condition, behindProfiles)
				}
				if !scoped {
					raw, _ := json.Marshal(map[string]any{"Resource": s.Resource, "Condition": s.Condition})
					t.Errorf("statement %s: %s is not confined to the session's TenantID tag: %s", s.Sid, a, raw)
				}
			}
			if slices.Contains(strs(s.Action), "dynamodb:Scan") {
				t.Errorf("statement %s allows Scan, which carries no leading keys", s.Sid)
			}
		}
	}
	// The ABAC profiles (examples/profiles/*-abac.yaml) rely on the role
	// itself granting every action by the tag.
	for a := range accessGrants {
		if !granted[a] {
			t.Errorf("%s does not grant %s by the TenantID tag", access, a)
		}
	}
}

// The tenants' KMS key leaves its use to IAM (the access role's policy,
// which binds the encryption context to the tag): its key policy trusts
// the account alone, and it rotates.
func TestTenantKeyTrustsTheAccountAlone(t *testing.T) {
	st := deploy(t, loadTemplate(t), nil)
	keys := ofType(st, "AWS::KMS::Key")
	if len(keys) != 1 {
		t.Fatalf("KMS keys %v, want one", keys)
	}
	k := st.Resources[keys[0]]
	if k.Properties["EnableKeyRotation"] != true {
		t.Errorf("%s: EnableKeyRotation %v, want true", keys[0], k.Properties["EnableKeyRotation"])
	}
	policy := statements(t, k.Properties["KeyPolicy"])
	if len(policy) != 1 {
		t.Fatalf("%s: %d key policy statements, want one", keys[0], len(policy))
	}
	s := policy[0]
	root := map[string]any{"AWS": map[string]any{"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
	if s.Effect != "Allow" || !reflect.DeepEqual(s.Principal, root) || s.Condition != nil || s.NotAction != nil || s.NotResource != nil {
		raw, _ := json.Marshal(s)
		t.Errorf("%s: key policy %s, want an Allow for this account's IAM policies alone", keys[0], raw)
	}
}

func TestExampleDataIsEncryptedAndPrivate(t *testing.T) {
	st := deploy(t, loadTemplate(t), nil)
	var buckets, tables int
	for name, r := range st.Resources {
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

func TestExternalIDMustBeLong(t *testing.T) {
	tpl := loadTemplate(t)
	pattern, _ := tpl.Parameters["ExternalId"].AllowedPattern.(string)
	// CloudFormation's regular expressions allow {32,1224}; Go's stop at
	// 1000 repetitions, so read the bounds rather than compile the pattern.
	m := regexp.MustCompile(`^\^\$\|\^\[[^]]+\]\{(\d+),(\d+)\}\$$`).FindStringSubmatch(pattern)
	if m == nil {
		t.Fatalf("ExternalId AllowedPattern %q: want ^$|^[chars]{min,max}$", pattern)
	}
	if m[1] != "32" || m[2] != "1224" {
		t.Errorf("ExternalId length %s..%s, want 32..1224 (a guessable ExternalId is no barrier)", m[1], m[2])
	}
}

// redisTypes are the resources of the shared Redis: all of them with
// Redis=ElastiCache, none without.
var redisTypes = []string{
	"AWS::ElastiCache::ReplicationGroup",
	"AWS::ElastiCache::SubnetGroup",
	"AWS::EC2::SecurityGroup",
	"AWS::SecretsManager::Secret",
}

// ofType returns the logical names of the stack's resources of a type.
func ofType(st stack, typ string) []string {
	var names []string
	for name, r := range st.Resources {
		if r.Type == typ {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// replicationGroup returns the stack's one ElastiCache replication group.
func replicationGroup(t *testing.T, st stack) (string, resource) {
	t.Helper()
	groups := ofType(st, "AWS::ElastiCache::ReplicationGroup")
	if len(groups) != 1 {
		t.Fatalf("%s: replication groups %v, want one", st.name, groups)
	}
	return groups[0], st.Resources[groups[0]]
}

// redisStacks are the stacks of stacks that create Redis.
func redisStacks(t *testing.T, tpl template) []stack {
	t.Helper()
	return stacksWhere(t, tpl, "Redis", "ElastiCache")
}

// stacksWhere are the stacks of stacks whose parameter param is value;
// the test fails when there is none.
func stacksWhere(t *testing.T, tpl template, param, value string) []stack {
	t.Helper()
	var out []stack
	for _, params := range stacks {
		if params[param] == value {
			out = append(out, deploy(t, tpl, params))
		}
	}
	if len(out) == 0 {
		t.Fatalf("no stack of the tests has %s: %s", param, value)
	}
	return out
}

var subVariable = regexp.MustCompile(`\$\{([A-Za-z0-9]+)(\.[A-Za-z0-9.]+)?\}`)

// references lists the parameters and resources v names: Ref, Fn::GetAtt
// and the ${Name} of Fn::Sub, not pseudo parameters.
func references(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for fn, arg := range v {
			switch fn {
			case "Ref":
				if name, ok := arg.(string); ok && !strings.HasPrefix(name, "AWS::") {
					out = append(out, name)
				}
				continue
			case "Fn::GetAtt":
				if l, ok := arg.([]any); ok && len(l) > 0 {
					if name, ok := l[0].(string); ok {
						out = append(out, name)
					}
				}
				continue
			case "Fn::Sub":
				text, local := arg, map[string]any{}
				if l, ok := arg.([]any); ok && len(l) == 2 {
					text = l[0]
					local, _ = l[1].(map[string]any)
					out = append(out, references(l[1])...)
				}
				if s, ok := text.(string); ok {
					for _, m := range subVariable.FindAllStringSubmatch(s, -1) {
						if _, ok := local[m[1]]; !ok {
							out = append(out, m[1])
						}
					}
				}
				continue
			}
			out = append(out, references(arg)...)
		}
	case []any:
		for _, e := range v {
			out = append(out, references(e)...)
		}
	}
	return out
}

// The template's existing use (roles and example data) must not change:
// Redis is created only when asked for, and then only inside the network
// it is given.
func TestRedisIsCreatedOnlyWhenAskedFor(t *testing.T) {
	tpl := loadTemplate(t)
	for _, tc := range []struct {
		name     string
		params   map[string]string
		accepted bool
		redis    bool
		failover bool
	}{
		{name: "the defaults", params: nil, accepted: true},
		{name: "Redis=None ignores the network", params: with(redisParams, "Redis", "None"), accepted: true},
		{name: "ElastiCache, two nodes", params: redisParams, accepted: true, redis: true, failover: true},
		{name: "ElastiCache, six nodes", params: with(redisParams, "RedisNodes", "6"), accepted: true, redis: true, failover: true},
		{name: "ElastiCache, one node", params: with(redisParams, "RedisNodes", "1"), accepted: true, redis: true, failover: false},
		{name: "ElastiCache without a VPC", params: with(redisParams, "RedisVpcId", ""), accepted: false},
		{name: "ElastiCache without subnets", params: with(redisParams, "RedisSubnetIds", ""), accepted: false},
		{name: "ElastiCache with an empty subnet", params: with(redisParams, "RedisSubnetIds", "subnet-0123456789abcdef0,"), accepted: false},
		{name: "ElastiCache without the service's security group", params: with(redisParams, "ServiceSecurityGroupId", ""), accepted: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := plan(t, tpl, tc.params)
			if (err == nil) != tc.accepted {
				t.Fatalf("rules: %v, want accepted %v", err, tc.accepted)
			}
			if err != nil {
				return
			}
			for _, typ := range redisTypes {
				if got, want := len(ofType(st, typ)), map[bool]int{true: 1, false: 0}[tc.redis]; got != want {
					t.Errorf("%d %s, want %d", got, typ, want)
				}
			}
			// What exists names only what exists, whatever the condition.
			for name, r := range st.Resources {
				for _, ref := range references(r.Properties) {
					if _, param := st.params[ref]; !param && st.Resources[ref].Type == "" {
						t.Errorf("resource %s refers to %s, which this stack does not have", name, ref)
					}
				}
			}
			for name, o := range st.Outputs {
				for _, ref := range references(o.Value) {
					if _, param := st.params[ref]; !param && st.Resources[ref].Type == "" {
						t.Errorf("output %s refers to %s, which this stack does not have", name, ref)
					}
				}
			}
			if !tc.redis {
				return
			}
			group, rg := replicationGroup(t, st)
			if !reflect.DeepEqual(rg.Properties["NumCacheClusters"], ref("RedisNodes")) {
				t.Errorf("NumCacheClusters %v, want RedisNodes", rg.Properties["NumCacheClusters"])
			}
			for _, p := range []string{"AutomaticFailoverEnabled", "MultiAZEnabled"} {
				if rg.Properties[p] != tc.failover {
					t.Errorf("%s %v with RedisNodes %s, want %v", p, rg.Properties[p], st.params["RedisNodes"], tc.failover)
				}
			}
			// The user builds redis.url from these.
			secret := ofType(st, "AWS::SecretsManager::Secret")[0]
			want := map[string]bool{}
			for _, v := range []any{getAtt(group, "PrimaryEndPoint.Address"), getAtt(group, "PrimaryEndPoint.Port"), ref(secret)} {
				raw, _ := json.Marshal(v)
				want[string(raw)] = false
			}
			url := false
			for _, o := range st.Outputs {
				raw, _ := json.Marshal(o.Value)
				if _, ok := want[string(raw)]; ok {
					want[string(raw)] = true
				}
				url = url || strings.Contains(o.Description, "rediss://")
			}
			for v, found := range want {
				if !found {
					t.Errorf("no output gives %s", v)
				}
			}
			if !url {
				t.Error("no output's description says how to build the rediss:// URL")
			}
		})
	}
}

// The replicas' Redis speaks TLS only, encrypts its disk, and admits only
// clients with the AUTH token Secrets Manager generated for it.
func TestRedisIsEncryptedAndNeedsItsGeneratedAuthToken(t *testing.T) {
	authToken := regexp.MustCompile(`^\{\{resolve:secretsmanager:\$\{([A-Za-z0-9]+)\}(:SecretString)?\}\}$`)
	for _, st := range redisStacks(t, loadTemplate(t)) {
		_, rg := replicationGroup(t, st)
		p := rg.Properties
		if p["TransitEncryptionEnabled"] != true || (p["TransitEncryptionMode"] != nil && p["TransitEncryptionMode"] != "required") {
			t.Errorf("%s: TransitEncryptionEnabled %v, TransitEncryptionMode %v: want TLS required", st.name, p["TransitEncryptionEnabled"], p["TransitEncryptionMode"])
		}
		if p["AtRestEncryptionEnabled"] != true {
			t.Errorf("%s: AtRestEncryptionEnabled %v, want true", st.name, p["AtRestEncryptionEnabled"])
		}
		sub, _ := p["AuthToken"].(map[string]any)
		text, _ := sub["Fn::Sub"].(string)
		m := authToken.FindStringSubmatch(text)
		if len(sub) != 1 || m == nil {
			t.Errorf("%s: AuthToken %v, want the whole SecretString of a secret of the template: {{resolve:secretsmanager:${Secret}:SecretString}}", st.name, p["AuthToken"])
			continue
		}
		secret, ok := st.Resources[m[1]]
		if !ok || secret.Type != "AWS::SecretsManager::Secret" {
			t.Errorf("%s: AuthToken resolves %s, not a secret of the stack", st.name, m[1])
			continue
		}
		raw, _ := json.Marshal(secret.Properties)
		var sp struct {
			SecretString         *string
			GenerateSecretString *struct {
				SecretStringTemplate *string
				PasswordLength       *int
				ExcludeCharacters    string
				ExcludePunctuation   bool
				IncludeSpace         bool
			}
		}
		if err := json.Unmarshal(raw, &sp); err != nil {
			t.Fatalf("%s: secret %s: %v", st.name, m[1], err)
		}
		g := sp.GenerateSecretString
		if sp.SecretString != nil || g == nil || g.SecretStringTemplate != nil {
			t.Errorf("%s: secret %s %s: want a token Secrets Manager generates, alone in the SecretString", st.name, m[1], raw)
			continue
		}
		length := 32 // Secrets Manager's default
		if g.PasswordLength != nil {
			length = *g.PasswordLength
		}
		if length < 16 || length > 128 {
			t.Errorf("%s: secret %s generates %d characters; ElastiCache takes 16 to 128", st.name, m[1], length)
		}
		// ElastiCache refuses / " @, and the token goes unescaped into the
		// rediss:// URL.
		for _, c := range `/"@:%#?[]` {
			if !g.ExcludePunctuation && !strings.ContainsRune(g.ExcludeCharacters, c) {
				t.Errorf("%s: secret %s may generate %q, which ElastiCache or the URL refuses", st.name, m[1], c)
			}
		}
		if g.IncludeSpace && !strings.ContainsRune(g.ExcludeCharacters, ' ') {
			t.Errorf("%s: secret %s may generate a space, which ElastiCache refuses", st.name, m[1])
		}
	}
}

// Redis keeps the replicas' leases and limits: whoever reaches it could
// spend or clear them. Its security group admits the service's alone, on
// its one port.
func TestRedisAdmitsOnlyTheServiceSecurityGroup(t *testing.T) {
	for _, st := range redisStacks(t, loadTemplate(t)) {
		_, rg := replicationGroup(t, st)
		port := fmt.Sprint(rg.Properties["Port"])
		if port != "6379" {
			t.Errorf("%s: Port %s, want 6379, which the NetworkPolicy opens", st.name, port)
		}
		groups, _ := rg.Properties["SecurityGroupIds"].([]any)
		sgs := ofType(st, "AWS::EC2::SecurityGroup")
		if len(groups) != 1 || len(sgs) != 1 || !reflect.DeepEqual(groups[0], getAtt(sgs[0], "GroupId")) {
			t.Fatalf("%s: SecurityGroupIds %v, want the template's own group %v alone", st.name, groups, sgs)
		}
		sg := st.Resources[sgs[0]]
		rules, _ := sg.Properties["SecurityGroupIngress"].([]any)
		// The template has no other security group a separate rule could
		// be for.
		for _, r := range st.Resources {
			if r.Type == "AWS::EC2::SecurityGroupIngress" {
				rules = append(rules, r.Properties)
			}
		}
		if len(rules) != 1 {
			t.Fatalf("%s: %d ingress rules, want one: %v", st.name, len(rules), rules)
		}
		rule, _ := rules[0].(map[string]any)
		for k := range rule {
			if !slices.Contains([]string{"Description", "IpProtocol", "FromPort", "ToPort", "SourceSecurityGroupId"}, k) {
				t.Errorf("%s: ingress rule sets %s (%v): want the service's security group as the only source", st.name, k, rule[k])
			}
		}
		if rule["IpProtocol"] != "tcp" || fmt.Sprint(rule["FromPort"]) != port || fmt.Sprint(rule["ToPort"]) != port {
			t.Errorf("%s: ingress %v %v-%v, want tcp %s alone", st.name, rule["IpProtocol"], rule["FromPort"], rule["ToPort"], port)
		}
		if !reflect.DeepEqual(rule["SourceSecurityGroupId"], ref("ServiceSecurityGroupId")) {
			t.Errorf("%s: ingress from %v, want ServiceSecurityGroupId", st.name, rule["SourceSecurityGroupId"])
		}
	}
}

// managedDocuments are the documents of managed policies of the template
// that arns (Refs) name; another policy fails the test, as nothing here
// could check it.
func managedDocuments(t *testing.T, st stack, arns []any) []any {
	t.Helper()
	var docs []any
	for _, a := range arns {
		m, _ := a.(map[string]any)
		name, _ := m["Ref"].(string)
		r, ok := st.Resources[name]
		if !ok || r.Type != "AWS::IAM::ManagedPolicy" {
			t.Fatalf("%s: managed policy %v is not one of the template", st.name, a)
		}
		docs = append(docs, r.Properties["PolicyDocument"])
	}
	return docs
}

// revocationActions are what `tokenvendor revoke` needs on the revocation
// policy: read it and write a new default version, deleting the oldest
// when IAM holds five.
var revocationActions = []string{
	"iam:CreatePolicyVersion",
	"iam:DeletePolicyVersion",
	"iam:GetPolicy",
	"iam:GetPolicyVersion",
	"iam:ListPolicyVersions",
}

// grants reports whether an Allow statement's Action covers action, as IAM
// matches them: without case, with * and ? as wildcards. NotAction covers
// every action it does not name.
func grants(s statement, action string) bool {
	if s.Effect != "Allow" {
		return false
	}
	match := func(patterns []string) bool {
		for _, p := range patterns {
			re := "(?i)^" + strings.NewReplacer(`\*`, ".*", `\?`, ".").Replace(regexp.QuoteMeta(p)) + "$"
			if regexp.MustCompile(re).MatchString(action) {
				return true
			}
		}
		return false
	}
	if s.NotAction != nil {
		return !match(strs(s.NotAction))
	}
	return match(strs(s.Action))
}

func TestGrantsMatchesAsIAMDoes(t *testing.T) {
	for _, tt := range []struct {
		s    statement
		want bool
	}{
		{statement{Effect: "Allow", Action: "iam:CreatePolicyVersion"}, true},
		{statement{Effect: "Allow", Action: "IAM:createpolicyversion"}, true},
		{statement{Effect: "Allow", Action: "*"}, true},
		{statement{Effect: "Allow", Action: []any{"s3:GetObject", "iam:*"}}, true},
		{statement{Effect: "Allow", Action: "iam:Create*Version"}, true},
		{statement{Effect: "Allow", Action: "iam:CreatePolicyVersio?"}, true},
		{statement{Effect: "Allow", NotAction: "s3:*"}, true},
		{statement{Effect: "Deny", Action: "*"}, false},
		{statement{Effect: "Allow", Action: "iam:CreatePolicy"}, false},
		{statement{Effect: "Allow", Action: "sts:AssumeRole"}, false},
		{statement{Effect: "Allow", NotAction: "iam:*"}, false},
	} {
		if got := grants(tt.s, "iam:CreatePolicyVersion"); got != tt.want {
			t.Errorf("grants(%+v, iam:CreatePolicyVersion) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

// The revocation policy is created with the statement tokenvendor keeps
// when no cut-off is left, is attached to the access role, and its ARN is
// an output for the config.
func TestRevocationPolicyIsAttachedToTheAccessRoleDenyingNothingYet(t *testing.T) {
	tpl := loadTemplate(t)
	for _, params := range stacks {
		st := deploy(t, tpl, params)
		r, ok := st.Resources["RevocationPolicy"]
		if !ok || r.Type != "AWS::IAM::ManagedPolicy" {
			t.Fatalf("%s: no managed policy RevocationPolicy", st.name)
		}
		var want any
		if err := json.Unmarshal([]byte(`{"Version":"2012-10-17","Statement":[`+revoke.PlaceholderStatement+`]}`), &want); err != nil {
			t.Fatal(err)
		}
		if got := r.Properties["PolicyDocument"]; !reflect.DeepEqual(got, want) {
			raw, _ := json.Marshal(got)
			t.Errorf("%s: RevocationPolicy is created with %s, want tokenvendor's placeholder %s", st.name, raw, revoke.PlaceholderStatement)
		}
		if roles, groups, users := r.Properties["Roles"], r.Properties["Groups"], r.Properties["Users"]; roles != nil || groups != nil || users != nil {
			t.Errorf("%s: RevocationPolicy is attached to %v %v %v besides the access role", st.name, roles, groups, users)
		}
		var attached []string
		for name, res := range st.Resources {
			arns, _ := res.Properties["ManagedPolicyArns"].([]any)
			if slices.ContainsFunc(arns, func(a any) bool { return reflect.DeepEqual(a, ref("RevocationPolicy")) }) {
				attached = append(attached, name)
			}
		}
		if !slices.Equal(attached, []string{"AccessRole"}) {
			t.Errorf("%s: RevocationPolicy attached to %v, want the access role alone", st.name, attached)
		}
		var output bool
		for _, o := range st.Outputs {
			output = output || (reflect.DeepEqual(o.Value, ref("RevocationPolicy")) && strings.Contains(o.Description, "revocation.policy_arn"))
		}
		if !output {
			t.Errorf("%s: no output gives the revocation policy's ARN for revocation.policy_arn", st.name)
		}
	}
}

// The operator role may read and version the revocation policy and, with
// the tenant store, read and write that table, and do nothing else; no
// other role of the template, the service's own least of all, may change
// the policy.
func TestOnlyTheOperatorRoleMayVersionTheRevocationPolicy(t *testing.T) {
	tpl := loadTemplate(t)
	for _, params := range stacks {
		st := deploy(t, tpl, params)
		operator := role(t, st, "OperatorRole")
		want := map[string]any{}
		for _, a := range revocationActions {
			want[a] = ref("RevocationPolicy")
		}
		if hasTenantStore(st) {
			for _, a := range operatorTenantStoreActions {
				want[a] = getAtt(tenantStoreTable, "Arn")
			}
		}
		checkPermissions(t, st, operator, want)
		trust := statements(t, st.Resources[operator].Properties["AssumeRolePolicyDocument"])
		account := map[string]any{"AWS": map[string]any{"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
		if len(trust) != 1 || trust[0].Effect != "Allow" || !reflect.DeepEqual(trust[0].Principal, account) || !slices.Equal(strs(trust[0].Action), []string{"sts:AssumeRole"}) {
			t.Errorf("%s: %s trust %+v, want sts:AssumeRole by this account's principals alone", st.name, operator, trust)
		}

		for name, r := range st.Resources {
			if r.Type != "AWS::IAM::Role" || name == operator {
				continue
			}
			docs, managed := attachedTo(st, name)
			docs = append(docs, managedDocuments(t, st, managed)...)
			for _, d := range docs {
				for _, s := range statements(t, d) {
					for _, a := range revocationActions {
						if grants(s, a) {
							t.Errorf("%s: %s may %s (statement %s): only the operator role may touch the revocation policy", st.name, name, a, s.Sid)
						}
					}
				}
			}
		}
	}
}
