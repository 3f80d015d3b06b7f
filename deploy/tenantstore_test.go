package deploy_test

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/config"
)

// tenantStoreTable is the tenant store's logical name in the template.
const tenantStoreTable = "TenantStoreTable"

// tenantStoreResources are what TenantStore=DynamoDB adds to a stack: the
// table and the two roles' policies on it; tenantStoreOutput is its name.
var tenantStoreResources = []string{"OperatorRoleTenantStorePolicy", "ServiceRoleTenantStorePolicy", tenantStoreTable}

const tenantStoreOutput = "TenantStoreTableName"

// serviceTenantStoreActions are what the service does with the store
// (internal/tenants): consistent GetItem (the revision item, one tenant)
// and Scan (the tenants written since a revision). Reads alone.
var serviceTenantStoreActions = []string{"dynamodb:GetItem", "dynamodb:Scan"}

// operatorTenantStoreActions are what `tokenvendor tenants` does: the
// service's reads, and TransactWriteItems of two conditional Update
// actions, which IAM authorizes as dynamodb:UpdateItem each (a
// ConditionCheck action would need dynamodb:ConditionCheckItem; the store
// sends none).
var operatorTenantStoreActions = []string{"dynamodb:GetItem", "dynamodb:Scan", "dynamodb:UpdateItem"}

// tenantStoreWrites are the DynamoDB actions that change a table's items,
// or the table, or put an older copy in its place: any of them could lift
// a suspension.
var tenantStoreWrites = []string{
	"dynamodb:PutItem",
	"dynamodb:UpdateItem",
	"dynamodb:DeleteItem",
	"dynamodb:BatchWriteItem",
	"dynamodb:PartiQLInsert",
	"dynamodb:PartiQLUpdate",
	"dynamodb:PartiQLDelete",
	"dynamodb:UpdateTable",
	"dynamodb:DeleteTable",
	"dynamodb:RestoreTableToPointInTime",
	"dynamodb:RestoreTableFromBackup",
	"dynamodb:ImportTable",
}

// tenantStoreStacks are the stacks of stacks that create the tenant store.
func tenantStoreStacks(t *testing.T, tpl template) []stack {
	t.Helper()
	return stacksWhere(t, tpl, "TenantStore", "DynamoDB")
}

// The tenant store decides who is suspended: it is kept when the stack
// goes, cannot be deleted by mistake, can be restored, and is encrypted;
// its key is the one internal/tenants reads; its name is an output for
// tenants.dynamodb.table.
func TestTenantStoreTableIsKeptAndEncrypted(t *testing.T) {
	tpl := loadTemplate(t)
	for _, st := range tenantStoreStacks(t, tpl) {
		r, ok := st.Resources[tenantStoreTable]
		if !ok || r.Type != "AWS::DynamoDB::Table" {
			t.Fatalf("%s: no table %s", st.name, tenantStoreTable)
		}
		if r.DeletionPolicy != "Retain" || r.UpdateReplacePolicy != "Retain" {
			t.Errorf("%s: DeletionPolicy %q, UpdateReplacePolicy %q: want the table kept (Retain) whatever happens to the stack", st.name, r.DeletionPolicy, r.UpdateReplacePolicy)
		}
		raw, _ := json.Marshal(r.Properties)
		var tb struct {
			TableName            any
			BillingMode          string
			AttributeDefinitions []map[string]string
			KeySchema            []map[string]string
			SSESpecification     struct{ SSEEnabled bool }
			PointInTime          struct{ PointInTimeRecoveryEnabled bool } `json:"PointInTimeRecoverySpecification"`
			DeletionProtection   bool                                      `json:"DeletionProtectionEnabled"`
		}
		if err := json.Unmarshal(raw, &tb); err != nil {
			t.Fatalf("%s: %s: %v", st.name, tenantStoreTable, err)
		}
		if !reflect.DeepEqual(tb.KeySchema, []map[string]string{{"AttributeName": "tenant_id", "KeyType": "HASH"}}) ||
			!reflect.DeepEqual(tb.AttributeDefinitions, []map[string]string{{"AttributeName": "tenant_id", "AttributeType": "S"}}) {
			t.Errorf("%s: key %v %v, want the hash key tenant_id (S) alone", st.name, tb.KeySchema, tb.AttributeDefinitions)
		}
		if tb.BillingMode != "PAY_PER_REQUEST" {
			t.Errorf("%s: BillingMode %q, want PAY_PER_REQUEST (a throttled poll would leave replicas unsettled)", st.name, tb.BillingMode)
		}
		if !tb.SSESpecification.SSEEnabled || !tb.PointInTime.PointInTimeRecoveryEnabled || !tb.DeletionProtection {
			t.Errorf("%s: SSE %v, point-in-time recovery %v, deletion protection %v: want all on", st.name,
				tb.SSESpecification.SSEEnabled, tb.PointInTime.PointInTimeRecoveryEnabled, tb.DeletionProtection)
		}
		if !reflect.DeepEqual(tb.TableName, ref("TenantStoreTableName")) {
			t.Errorf("%s: TableName %v, want the parameter TenantStoreTableName", st.name, tb.TableName)
		}
		o, ok := st.Outputs[tenantStoreOutput]
		if !ok || !reflect.DeepEqual(o.Value, ref(tenantStoreTable)) || !strings.Contains(o.Description, "tenants.dynamodb.table") {
			t.Errorf("%s: output %s %+v, want the table's name for tenants.dynamodb.table", st.name, tenantStoreOutput, o)
		}
	}
}

// TenantStore=None (the default) leaves every stack as it was; DynamoDB
// adds the table and the two policies on it, and changes nothing else but
// the two roles' descriptions.
func TestTenantStoreIsCreatedOnlyWhenAskedFor(t *testing.T) {
	tpl := loadTemplate(t)
	var compared int
	for _, params := range stacks {
		if params["TenantStore"] != "" {
			continue
		}
		none := deploy(t, tpl, params)
		for _, name := range tenantStoreResources {
			if _, ok := none.Resources[name]; ok {
				t.Errorf("%s: %s exists without TenantStore=DynamoDB", none.name, name)
			}
		}
		if _, ok := none.Outputs[tenantStoreOutput]; ok {
			t.Errorf("%s: output %s without the tenant store", none.name, tenantStoreOutput)
		}
		for _, name := range ofType(none, "AWS::DynamoDB::Table") {
			if name != "Table" {
				t.Errorf("%s: table %s besides the example data's", none.name, name)
			}
		}

		store := deploy(t, tpl, with(params, "TenantStore", "DynamoDB"))
		compared++
		var added []string
		for name := range store.Resources {
			if _, ok := none.Resources[name]; !ok {
				added = append(added, name)
			}
		}
		slices.Sort(added)
		if !slices.Equal(added, tenantStoreResources) {
			t.Errorf("%s: TenantStore=DynamoDB adds %v, want %v", store.name, added, tenantStoreResources)
		}
		for name, r := range none.Resources {
			s, ok := store.Resources[name]
			if !ok {
				t.Errorf("%s: TenantStore=DynamoDB drops %s", store.name, name)
				continue
			}
			if name == "ServiceRole" || name == "OperatorRole" {
				r, s = withoutDescription(r), withoutDescription(s)
			}
			if !reflect.DeepEqual(r, s) {
				a, _ := json.Marshal(r)
				b, _ := json.Marshal(s)
				t.Errorf("%s: TenantStore=DynamoDB changes %s:\n%s\nto\n%s", store.name, name, a, b)
			}
		}
		for name, o := range none.Outputs {
			if !reflect.DeepEqual(store.Outputs[name], o) {
				t.Errorf("%s: TenantStore=DynamoDB changes output %s", store.name, name)
			}
		}
		if len(store.Outputs) != len(none.Outputs)+1 {
			t.Errorf("%s: TenantStore=DynamoDB adds %d outputs, want %s alone", store.name, len(store.Outputs)-len(none.Outputs), tenantStoreOutput)
		}
		// What exists names only what exists.
		for _, st := range []stack{none, store} {
			for name, r := range st.Resources {
				for _, ref := range references(r.Properties) {
					if _, param := st.params[ref]; !param && st.Resources[ref].Type == "" {
						t.Errorf("%s: resource %s refers to %s, which this stack does not have", st.name, name, ref)
					}
				}
			}
			for name, o := range st.Outputs {
				for _, ref := range references(o.Value) {
					if _, param := st.params[ref]; !param && st.Resources[ref].Type == "" {
						t.Errorf("%s: output %s refers to %s, which this stack does not have", st.name, name, ref)
					}
				}
			}
		}
	}
	if compared == 0 {
		t.Fatal("no stack compared")
	}
}

// withoutDescription is r without its Description property.
func withoutDescription(r resource) resource {
	props := map[string]any{}
	for k, v := range r.Properties {
		if k != "Description" {
			props[k] = v
		}
	}
	r.Properties = props
	return r
}

// tableWildcard matches, in a JSON string, a DynamoDB ARN whose table is
// a wildcard.
var tableWildcard = regexp.MustCompile(`:dynamodb:[^"]*:(\*|table/[^"]*\*)"$`)

// reachesTenantStore reports whether a statement's resources could cover
// the tenant store: by name, or by a wildcard over tables or everything.
func reachesTenantStore(resource any) bool {
	elems, ok := resource.([]any)
	if !ok {
		elems = []any{resource}
	}
	for _, e := range elems {
		if sub, ok := e.(map[string]any); ok && len(sub) == 1 && sub["Fn::Sub"] != nil {
			e = sub["Fn::Sub"]
			if l, ok := e.([]any); ok && len(l) > 0 {
				e = l[0]
			}
		}
		raw, _ := json.Marshal(e)
		if e == "*" || strings.Contains(string(raw), "TenantStoreTable") || tableWildcard.Match(raw) {
			return true
		}
	}
	return false
}

func TestReachesTenantStore(t *testing.T) {
	for _, tt := range []struct {
		resource any
		want     bool
	}{
		{getAtt(tenantStoreTable, "Arn"), true},
		{[]any{getAtt("Table", "Arn"), getAtt(tenantStoreTable, "Arn")}, true},
		{"*", true},
		{"arn:aws:dynamodb:us-east-1:123456789012:table/*", true},
		{map[string]any{"Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${TenantStoreTableName}"}, true},
		{map[string]any{"Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/tokenvendor-*"}, true},
		{map[string]any{"Fn::Sub": "arn:${AWS::Partition}:dynamodb:*:*:*"}, true},
		{"arn:aws:dynamodb:*:*:table/Orders", false},
		{getAtt("Table", "Arn"), false},
		{map[string]any{"Fn::Sub": "${Bucket.Arn}/*"}, false},
		{ref("RevocationPolicy"), false},
	} {
		if got := reachesTenantStore(tt.resource); got != tt.want {
			t.Errorf("reachesTenantStore(%v) = %v, want %v", tt.resource, got, tt.want)
		}
	}
}

// Only the operator role may change the tenant store, and only by
// UpdateItem (what `tokenvendor tenants` sends): the service role, the
// sidecar role and the access role may not, whatever the parameters.
func TestOnlyTheOperatorRoleMayWriteTheTenantStore(t *testing.T) {
	tpl := loadTemplate(t)
	for _, st := range tenantStoreStacks(t, tpl) {
		for name, r := range st.Resources {
			if r.Type != "AWS::IAM::Role" {
				continue
			}
			docs, managed := attachedTo(st, name)
			docs = append(docs, managedDocuments(t, st, managed)...)
			for _, d := range docs {
				for _, s := range statements(t, d) {
					if !reachesTenantStore(s.Resource) && s.NotResource == nil {
						continue
					}
					for _, a := range tenantStoreWrites {
						if !grants(s, a) {
							continue
						}
						if name != "OperatorRole" || a != "dynamodb:UpdateItem" {
							raw, _ := json.Marshal(s)
							t.Errorf("%s: %s may %s on the tenant store (%s): only the operator role may write it, by UpdateItem", st.name, name, a, raw)
						}
					}
				}
			}
		}
		// Nor may anyone else through a resource policy on the table.
		if p := st.Resources[tenantStoreTable].Properties["ResourcePolicy"]; p != nil {
			t.Errorf("%s: the tenant store has a resource policy %v", st.name, p)
		}
	}
}

// uncommented returns raw with its commented-out top-level section key
// (a line "# key:" and the indented "#   ..." lines after it) in force.
func uncommented(t *testing.T, where, raw, key string) string {
	t.Helper()
	lines := strings.Split(raw, "\n")
	start := slices.Index(lines, "# "+key+":")
	if start < 0 {
		t.Fatalf("%s: no commented-out %s section (a line %q)", where, key, "# "+key+":")
	}
	end := start + 1
	for end < len(lines) && strings.HasPrefix(lines[end], "#   ") {
		end++
	}
	if end == start+1 {
		t.Fatalf("%s: the commented-out %s section is empty", where, key)
	}
	for i := start; i < end; i++ {
		lines[i] = strings.TrimPrefix(lines[i], "# ")
	}
	return strings.Join(lines, "\n")
}

// The shipped configs carry a tenants.dynamodb example, commented out so
// that they load without the table: in force, it loads, names the table
// the template creates by default, and polls as docs/tenants.md says.
func TestTenantStoreExamplesLoadAndNameTheTemplatesTable(t *testing.T) {
	tpl := loadTemplate(t)
	table := tpl.Parameters["TenantStoreTableName"].Default
	if table == nil {
		t.Fatal("no default TenantStoreTableName in the template")
	}
	standalone := func(t *testing.T) (string, func(string) []byte) {
		ms := renderOverlay(t, "standalone")
		pod := podTemplateOf(t, find(t, ms, "Deployment", "tokenvendor"))
		c := tokenvendorContainer(t, pod)
		_, raw := configText(t, ms, pod, c)
		return raw, func(text string) []byte { b, _ := standIns(t, text, pod, c); return b }
	}
	file := func(path string) func(t *testing.T) (string, func(string) []byte) {
		return func(t *testing.T) (string, func(string) []byte) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			return string(b), func(text string) []byte { return []byte(text) }
		}
	}
	for _, tc := range []struct {
		name   string
		config func(t *testing.T) (raw string, parsable func(string) []byte)
		poll   time.Duration
	}{
		{name: "kubernetes/base/config.yaml", config: standalone, poll: config.DefaultTenantPollRedis},
		{name: "ecs/config.yaml", config: file("ecs/config.yaml"), poll: config.DefaultTenantPoll},
		{name: "examples/config.yaml", config: file("../examples/config.yaml"), poll: config.DefaultTenantPoll},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, parsable := tc.config(t)
			if _, err := config.Parse(parsable(raw)); err != nil {
				t.Fatalf("as shipped, it does not load: %v", err)
			}
			cfg, err := config.Parse(parsable(uncommented(t, tc.name, raw, "tenants")))
			if err != nil {
				t.Fatalf("with its tenants section in force, it does not load: %v", err)
			}
			d := cfg.Tenants.DynamoDB
			if d == nil {
				t.Fatal("its tenants section has no dynamodb store")
			}
			if d.Table != table {
				t.Errorf("tenants.dynamodb.table %q, want the template's %v (output %s)", d.Table, table, tenantStoreOutput)
			}
			if d.Poll != tc.poll {
				t.Errorf("tenants.dynamodb.poll %s, want the default %s", d.Poll, tc.poll)
			}
			if d.Endpoint != "" || len(cfg.Tenants.Allow) > 0 || cfg.Tenants.File != "" {
				t.Errorf("tenants %+v: want the store alone, at the SDK's endpoint", cfg.Tenants)
			}
		})
	}
}
