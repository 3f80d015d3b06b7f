package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const (
	lambdaTemplate = "lambda/template.yaml"
	lambdaHandler  = "lambda/handler.py"
	// tenantHeader is the header of Lambda's Invoke that names the tenant
	// of a function in tenant isolation mode.
	tenantHeader = "integration.request.header.X-Amz-Tenant-Id"
)

// lambdaParams are the parameters the Lambda example has no default for.
var lambdaParams = map[string]string{
	"TokenvendorURL":      "https://tokenvendor.example.com",
	"TokenvendorServerId": "tokenvendor.prod.example.com",
	"CodeBucket":          "example-code",
	"DataBucket":          "example-tenant-data",
}

// lambdaStacks are the parameter sets the Lambda tests check.
func lambdaStacks(t *testing.T) []stack {
	t.Helper()
	tpl := loadTemplateFile(t, lambdaTemplate)
	return []stack{
		deploy(t, tpl, lambdaParams),
		deploy(t, tpl, with(lambdaParams, "TokenvendorRegion", "eu-west-1", "TokenvendorProfile", "objects")),
	}
}

// tenantFunctions are the functions of the stack in tenant isolation mode.
func tenantFunctions(st stack) []string {
	var names []string
	for name, r := range st.Resources {
		if r.Type != "AWS::Lambda::Function" {
			continue
		}
		if tc, _ := r.Properties["TenancyConfig"].(map[string]any); tc["TenantIsolationMode"] == "PER_TENANT" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// integrated is the function an API Gateway method's integration invokes,
// "" for none of the stack's.
func integrated(st stack, method resource) string {
	integ, _ := method.Properties["Integration"].(map[string]any)
	raw, _ := json.Marshal(integ["Uri"])
	for name, r := range st.Resources {
		if r.Type == "AWS::Lambda::Function" && strings.Contains(string(raw), "${"+name+".Arn}") {
			return name
		}
	}
	return ""
}

// refName is the logical name a {"Ref": name} or {"Fn::GetAtt": [name, ...]} names.
func refName(v any) string {
	m, _ := v.(map[string]any)
	if name, ok := m["Ref"].(string); ok {
		return name
	}
	if ga, ok := m["Fn::GetAtt"].([]any); ok && len(ga) == 2 {
		name, _ := ga[0].(string)
		return name
	}
	return ""
}

// subText is the string of an Fn::Sub, or the string itself.
func subText(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	m, _ := v.(map[string]any)
	s, _ := m["Fn::Sub"].(string)
	return s
}

// No check is ignored: cfn-lint's schema (1.51) knows TenancyConfig.
func TestLambdaExamplePassesCfnLint(t *testing.T) { cfnLint(t, lambdaTemplate) }

// The function the API invokes runs in tenant isolation mode, and knows
// where tokenvendor is and what it signs for; its handler reads nothing
// the template does not set.
func TestLambdaFunctionIsTenantIsolatedAndWired(t *testing.T) {
	handler, err := os.ReadFile(lambdaHandler)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^def handler\(event, context\):`).Match(handler) {
		t.Errorf("%s has no handler(event, context)", lambdaHandler)
	}
	read := regexp.MustCompile(`os\.environ(?:\.get\(|\[)"([A-Z_]+)"`).FindAllSubmatch(handler, -1)
	for _, st := range lambdaStacks(t) {
		fns := tenantFunctions(st)
		if !slices.Equal(fns, []string{"TenantFunction"}) {
			t.Fatalf("%s: functions in tenant isolation mode %v, want TenantFunction alone", st.name, fns)
		}
		fn := st.Resources["TenantFunction"].Properties
		if fn["Handler"] != "handler.handler" {
			t.Errorf("%s: Handler %v, want handler.handler (%s)", st.name, fn["Handler"], lambdaHandler)
		}
		env, _ := fn["Environment"].(map[string]any)
		vars, _ := env["Variables"].(map[string]any)
		region := ref("AWS::Region")
		if st.params["TokenvendorRegion"] != "" {
			region = ref("TokenvendorRegion")
		}
		for name, want := range map[string]any{
			"TOKENVENDOR_URL":       ref("TokenvendorURL"),
			"TOKENVENDOR_SERVER_ID": ref("TokenvendorServerId"),
			"TOKENVENDOR_REGION":    region,
			"TOKENVENDOR_PROFILE":   ref("TokenvendorProfile"),
		} {
			if !reflect.DeepEqual(vars[name], want) {
				t.Errorf("%s: %s = %v, want %v", st.name, name, vars[name], want)
			}
		}
		for _, m := range read {
			if _, ok := vars[string(m[1])]; !ok {
				t.Errorf("%s: %s reads %s, which the function's environment does not set", st.name, lambdaHandler, m[1])
			}
		}

		// Every method that invokes a function invokes the tenant-isolated
		// one, and only this API may invoke it.
		for name, r := range st.Resources {
			if r.Type == "AWS::ApiGateway::Method" {
				if fn := integrated(st, r); fn != "" && !slices.Contains(fns, fn) {
					t.Errorf("%s: method %s invokes %s, which is not in tenant isolation mode", st.name, name, fn)
				}
			}
			if r.Type == "AWS::Lambda::Permission" && refName(r.Properties["FunctionName"]) == "TenantFunction" {
				if r.Properties["Principal"] != "apigateway.amazonaws.com" || !strings.Contains(subText(r.Properties["SourceArn"]), ":${Api}/") {
					t.Errorf("%s: %s lets %v invoke the function from %v, want this API alone", st.name, name, r.Properties["Principal"], r.Properties["SourceArn"])
				}
			}
		}
	}
}

// Every role of the example, the tenant function's execution role first of
// all, may write its own function's logs and do nothing else: data access
// comes from vended sessions alone, so a handler that skips tokenvendor, or
// uses the role by mistake, reaches no tenant.
func TestLambdaRolesMayOnlyWriteTheirOwnLogs(t *testing.T) {
	for _, st := range lambdaStacks(t) {
		roleOf := map[string]string{} // role -> function
		for name, r := range st.Resources {
			if r.Type == "AWS::Lambda::Function" {
				role := refName(r.Properties["Role"])
				if prev, ok := roleOf[role]; ok {
					t.Errorf("%s: %s and %s share the role %s", st.name, prev, name, role)
				}
				roleOf[role] = name
			}
		}
		if roleOf["ExecutionRole"] != "TenantFunction" {
			t.Errorf("%s: the tenant function's role is not ExecutionRole (%v)", st.name, roleOf)
		}
		for name, r := range st.Resources {
			switch r.Type {
			case "AWS::IAM::Role":
			case "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy", "AWS::IAM::User", "AWS::IAM::Group":
				t.Errorf("%s: %s is a %s; the example's roles hold their inline logs policy alone", st.name, name, r.Type)
				continue
			default:
				continue
			}
			fn, ok := roleOf[name]
			if !ok {
				t.Errorf("%s: role %s is no function's execution role", st.name, name)
				continue
			}
			logging, _ := st.Resources[fn].Properties["LoggingConfig"].(map[string]any)
			group := refName(logging["LogGroup"])
			lg, ok := st.Resources[group]
			if !ok || lg.Type != "AWS::Logs::LogGroup" {
				t.Errorf("%s: %s logs to %v, not a log group of the template", st.name, fn, logging["LogGroup"])
				continue
			}
			if got, want := subText(lg.Properties["LogGroupName"]), "/aws/lambda/"+subText(st.Resources[fn].Properties["FunctionName"]); got != want {
				t.Errorf("%s: %s is named %q, want %q", st.name, group, got, want)
			}
			checkPermissions(t, st, name, map[string]any{
				"logs:CreateLogStream": getAtt(group, "Arn"),
				"logs:PutLogEvents":    getAtt(group, "Arn"),
			})
			trust := statements(t, r.Properties["AssumeRolePolicyDocument"])
			lambda := map[string]any{"Service": "lambda.amazonaws.com"}
			if len(trust) != 1 || trust[0].Effect != "Allow" || !reflect.DeepEqual(trust[0].Principal, lambda) || !slices.Equal(strs(trust[0].Action), []string{"sts:AssumeRole"}) {
				t.Errorf("%s: %s trust %+v, want sts:AssumeRole by lambda.amazonaws.com alone", st.name, name, trust)
			}
		}
	}
}

// tenantHeaderProblems says what is wrong with how an API Gateway method
// of st sets the invoke's tenant: nothing when X-Amz-Tenant-Id is mapped,
// once, from the verified claim (or context) of the method's own
// authorizer, and never from anything the client sends.
func tenantHeaderProblems(st stack, method map[string]any) []string {
	var problems []string
	integ, _ := method["Integration"].(map[string]any)
	params, _ := integ["RequestParameters"].(map[string]any)
	var sources []string
	for k, v := range params {
		if strings.EqualFold(k, tenantHeader) {
			s, _ := v.(string)
			sources = append(sources, s)
		}
	}
	if len(sources) != 1 {
		return append(problems, fmt.Sprintf("X-Amz-Tenant-Id mapped %d times, want once", len(sources)))
	}
	// A mapping template can set the header too:
	// #set($context.requestOverride.header.X-Amz-Tenant-Id = $input.params('x-tenant'))
	templates, _ := integ["RequestTemplates"].(map[string]any)
	for ct, tpl := range templates {
		if s, _ := tpl.(string); strings.Contains(strings.ToLower(s), "x-amz-tenant-id") {
			problems = append(problems, fmt.Sprintf("the %s mapping template sets X-Amz-Tenant-Id", ct))
		}
	}
	source := sources[0]
	authorizer, ok := st.Resources[refName(method["AuthorizerId"])]
	if !ok || authorizer.Type != "AWS::ApiGateway::Authorizer" {
		return append(problems, fmt.Sprintf("authorization %v with authorizer %v, not an authorizer of the template", method["AuthorizationType"], method["AuthorizerId"]))
	}
	// API Gateway maps names of [A-Za-z0-9._$-] alone: a claim such as
	// custom:tenant_id cannot be mapped at all.
	var want *regexp.Regexp
	switch typ := authorizer.Properties["Type"]; {
	case typ == "COGNITO_USER_POOLS" && method["AuthorizationType"] == "COGNITO_USER_POOLS":
		want = regexp.MustCompile(`^context\.authorizer\.claims\.[A-Za-z0-9_]+$`)
	case (typ == "TOKEN" || typ == "REQUEST") && method["AuthorizationType"] == "CUSTOM":
		want = regexp.MustCompile(`^context\.authorizer\.(?:[A-Za-z0-9_]+)$`)
	default:
		return append(problems, fmt.Sprintf("authorization %v with a %v authorizer", method["AuthorizationType"], typ))
	}
	if !want.MatchString(source) || source == "context.authorizer.claims" {
		problems = append(problems, fmt.Sprintf("X-Amz-Tenant-Id mapped from %q, not from the authorizer's verified claim", source))
	}
	return problems
}

// An invoke's tenant picks the execution environment, and with it the
// credentials cached there: it comes from the token API Gateway verified,
// never from a header, query string, path or body the client chose.
func TestTenantHeaderComesFromTheAuthorizersVerifiedClaim(t *testing.T) {
	st := lambdaStacks(t)[0]
	var methods []string
	for name, r := range st.Resources {
		if r.Type == "AWS::ApiGateway::Method" && slices.Contains(tenantFunctions(st), integrated(st, r)) {
			methods = append(methods, name)
			if p := tenantHeaderProblems(st, r.Properties); len(p) > 0 {
				t.Errorf("%s: %s", name, strings.Join(p, "; "))
			}
		}
	}
	if len(methods) == 0 {
		t.Fatal("no method invokes the tenant function")
	}

	setSource := func(source string) func(map[string]any) {
		return func(m map[string]any) {
			m["Integration"].(map[string]any)["RequestParameters"].(map[string]any)[tenantHeader] = source
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(method map[string]any)
	}{
		{name: "the client's X-Amz-Tenant-Id header", mutate: setSource("method.request.header.X-Amz-Tenant-Id")},
		{name: "another client header", mutate: setSource("method.request.header.x-tenant-id")},
		{name: "a multi-value header", mutate: setSource("method.request.multivalueheader.x-tenant-id")},
		{name: "a query string", mutate: setSource("method.request.querystring.tenant")},
		{name: "a path parameter", mutate: setSource("method.request.path.tenant")},
		{name: "the body", mutate: setSource("method.request.body.tenant_id")},
		{name: "a stage variable", mutate: setSource("stageVariables.tenant")},
		{name: "a constant", mutate: setSource("'acme'")},
		{name: "a claim API Gateway cannot map", mutate: setSource("context.authorizer.claims.custom:tenant_id")},
		{name: "no claim", mutate: setSource("context.authorizer.claims")},
		{name: "another context variable", mutate: setSource("context.identity.sourceIp")},
		{name: "a Lambda authorizer's context under a Cognito authorizer", mutate: setSource("context.authorizer.tenant_id")},
		{name: "not mapped", mutate: func(m map[string]any) {
			delete(m["Integration"].(map[string]any)["RequestParameters"].(map[string]any), tenantHeader)
		}},
		{name: "mapped twice, once from the client in another case", mutate: func(m map[string]any) {
			m["Integration"].(map[string]any)["RequestParameters"].(map[string]any)["integration.request.header.x-amz-tenant-id"] = "method.request.header.X-Amz-Tenant-Id"
		}},
		{name: "set by a mapping template", mutate: func(m map[string]any) {
			m["Integration"].(map[string]any)["RequestTemplates"] = map[string]any{
				"application/json": "#set($context.requestOverride.header.X-Amz-Tenant-Id = $input.params('x-tenant-id'))",
			}
		}},
		{name: "no authorization", mutate: func(m map[string]any) { m["AuthorizationType"] = "NONE"; delete(m, "AuthorizerId") }},
		{name: "IAM authorization", mutate: func(m map[string]any) { m["AuthorizationType"] = "AWS_IAM"; delete(m, "AuthorizerId") }},
		{name: "an authorizer of another API", mutate: func(m map[string]any) { m["AuthorizerId"] = "abc123" }},
		{name: "a CUSTOM method with the Cognito authorizer", mutate: func(m map[string]any) { m["AuthorizationType"] = "CUSTOM" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var method map[string]any
			raw, _ := json.Marshal(st.Resources[methods[0]].Properties)
			if err := json.Unmarshal(raw, &method); err != nil {
				t.Fatal(err)
			}
			tc.mutate(method)
			if p := tenantHeaderProblems(st, method); len(p) == 0 {
				raw, _ := json.Marshal(method["Integration"])
				t.Errorf("accepted %s", raw)
			}
		})
	}
}

// The claim the tenant comes from is one only an administrator sets: no
// self sign-up, an immutable attribute the app clients cannot write, and a
// trigger that copies it, under the name the API maps, into the ID token
// (or refuses a token to a user without one).
func TestTenantClaimIsSetByAdministratorsAlone(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 is needed to run the pre-token trigger: %v", err)
	}
	st := lambdaStacks(t)[0]
	var pools, clients []string
	for name, r := range st.Resources {
		switch r.Type {
		case "AWS::Cognito::UserPool":
			pools = append(pools, name)
		case "AWS::Cognito::UserPoolClient":
			clients = append(clients, name)
		}
	}
	if len(pools) != 1 || len(clients) == 0 {
		t.Fatalf("pools %v, clients %v: want one pool and its clients", pools, clients)
	}
	pool := st.Resources[pools[0]].Properties
	if admin, _ := pool["AdminCreateUserConfig"].(map[string]any); admin["AllowAdminCreateUserOnly"] != true {
		t.Errorf("%s: AdminCreateUserConfig %v: users could sign up with a tenant of their choosing", pools[0], admin)
	}
	var attribute map[string]any
	schema, _ := pool["Schema"].([]any)
	for _, a := range schema {
		if a, _ := a.(map[string]any); a["Name"] == "tenant_id" {
			attribute = a
		}
	}
	if attribute == nil || attribute["Mutable"] != false {
		t.Errorf("%s: tenant_id attribute %v, want immutable", pools[0], attribute)
	}
	for _, c := range clients {
		p := st.Resources[c].Properties
		write, ok := p["WriteAttributes"].([]any)
		if !ok || slices.Contains(write, any("custom:tenant_id")) {
			t.Errorf("%s: WriteAttributes %v: a user could set their own tenant (absent means every attribute)", c, p["WriteAttributes"])
		}
		if refName(p["UserPoolId"]) != pools[0] {
			t.Errorf("%s: client of %v, not of %s", c, p["UserPoolId"], pools[0])
		}
	}
	// The Cognito authorizer is this pool's.
	for name, r := range st.Resources {
		if r.Type == "AWS::ApiGateway::Authorizer" && r.Properties["Type"] == "COGNITO_USER_POOLS" {
			arns, _ := r.Properties["ProviderARNs"].([]any)
			if len(arns) != 1 || !reflect.DeepEqual(arns[0], getAtt(pools[0], "Arn")) {
				t.Errorf("%s: ProviderARNs %v, want %s alone", name, arns, pools[0])
			}
		}
	}

	lambdaConfig, _ := pool["LambdaConfig"].(map[string]any)
	trigger := refName(lambdaConfig["PreTokenGeneration"])
	fn, ok := st.Resources[trigger]
	if !ok || fn.Type != "AWS::Lambda::Function" {
		t.Fatalf("%s: PreTokenGeneration %v, not a function of the template", pools[0], lambdaConfig["PreTokenGeneration"])
	}
	code, _ := fn.Properties["Code"].(map[string]any)
	source, _ := code["ZipFile"].(string)
	if fn.Properties["Handler"] != "index.handler" || source == "" {
		t.Fatalf("%s: handler %v, want index.handler of its inline code", trigger, fn.Properties["Handler"])
	}
	// The claim the method maps is the one the trigger sets.
	var claim string
	for _, r := range st.Resources {
		if r.Type == "AWS::ApiGateway::Method" && integrated(st, r) == "TenantFunction" {
			params, _ := r.Properties["Integration"].(map[string]any)["RequestParameters"].(map[string]any)
			s, _ := params[tenantHeader].(string)
			claim = strings.TrimPrefix(s, "context.authorizer.claims.")
		}
	}
	run := func(attributes map[string]string) (map[string]any, error) {
		event, _ := json.Marshal(map[string]any{
			"triggerSource": "TokenGeneration_Authentication",
			"request":       map[string]any{"userAttributes": attributes},
			"response":      map[string]any{"claimsOverrideDetails": nil},
		})
		cmd := exec.Command(python, "-c", source+"\nimport json, sys\nprint(json.dumps(handler(json.load(sys.stdin), None)))")
		cmd.Stdin = bytes.NewReader(event)
		out, err := cmd.Output()
		if err != nil {
			return nil, err
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			return nil, fmt.Errorf("%s: %w", out, err)
		}
		return got, nil
	}
	got, err := run(map[string]string{"sub": "u1", "email": "a@example.com", "custom:tenant_id": "acme"})
	if err != nil {
		t.Fatalf("the trigger: %v", err)
	}
	want := map[string]any{"claimsOverrideDetails": map[string]any{"claimsToAddOrOverride": map[string]any{claim: "acme"}}}
	if !reflect.DeepEqual(got["response"], want) {
		t.Errorf("the trigger answers %v, want %v (the claim %q the API maps)", got["response"], want, claim)
	}
	for _, attributes := range []map[string]string{{"sub": "u2"}, {"sub": "u3", "custom:tenant_id": ""}} {
		if got, err := run(attributes); err == nil {
			t.Errorf("the trigger gave a user without a tenant (%v) a token: %v", attributes, got["response"])
		}
	}
}

// The outputs are what tokenvendor's config needs: the execution role for
// a tenant_from: token principal, and the pool as the tokens' issuer.
func TestLambdaOutputsFeedTokenvendorsConfig(t *testing.T) {
	st := lambdaStacks(t)[0]
	for name, want := range map[string]struct {
		value any
		says  string
	}{
		"ExecutionRoleArn": {getAtt("ExecutionRole", "Arn"), "tenant_from: token"},
		"Issuer":           {map[string]any{"Fn::Sub": "https://cognito-idp.${AWS::Region}.amazonaws.com/${UserPool}"}, "auth.issuer"},
		"JWKSURL":          {map[string]any{"Fn::Sub": "https://cognito-idp.${AWS::Region}.amazonaws.com/${UserPool}/.well-known/jwks.json"}, "auth.jwks_url"},
		"Audience":         {ref("UserPoolClient"), "auth.audiences"},
	} {
		o, ok := st.Outputs[name]
		if !ok {
			t.Errorf("no output %s", name)
			continue
		}
		if !reflect.DeepEqual(o.Value, want.value) || !strings.Contains(o.Description, want.says) {
			t.Errorf("output %s = %v (%q), want %v, its description naming %s", name, o.Value, o.Description, want.value, want.says)
		}
	}
}
