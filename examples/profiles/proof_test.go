package profiles_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/tokenvendor/tokenvendor/internal/policy"
)

var markdown = flag.Bool("markdown", false, "print the evaluator's table as Markdown, for docs/isolation.md")

// env is what the tests share: the repository, the tools folder and the
// tokenvendor binary built from it.
var env struct {
	root, tools, bin string
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(func() int {
		tmp, err := os.MkdirTemp("", "tokenvendor-profiles-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(tmp)
		if err := setup(tmp); err != nil {
			fmt.Fprintln(os.Stderr, "examples/profiles:", err)
			return 1
		}
		return m.Run()
	}())
}

// setup finds the evaluator and builds the real command, failing (never
// skipping) when either is missing: `make test` installs the evaluator
// first.
func setup(tmp string) error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	env.root = filepath.Dir(filepath.Dir(wd))
	env.tools = os.Getenv("TOKENVENDOR_TOOLS")
	if env.tools == "" {
		env.tools = filepath.Join(env.root, ".tools")
	}
	if _, err := exec.LookPath("node"); err != nil {
		return fmt.Errorf("node is needed to run the IAM evaluator: %w", err)
	}
	pkg := filepath.Join(env.tools, "iamsim", "node_modules", "@cloud-copilot", "iam-simulate", "package.json")
	if _, err := os.Stat(pkg); err != nil {
		return fmt.Errorf("@cloud-copilot/iam-simulate is not installed in %s (run `make tools` or scripts/tools.sh): %w", filepath.Join(env.tools, "iamsim"), err)
	}
	env.bin = filepath.Join(tmp, "tokenvendor")
	build := exec.Command("go", "build", "-o", env.bin, "./cmd/tokenvendor")
	build.Dir = env.root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build tokenvendor: %v\n%s", err, out)
	}
	return nil
}

// tokenvendor runs the real command and returns what it printed.
func tokenvendor(args ...string) ([]byte, error) {
	cmd := exec.Command(env.bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("tokenvendor %s: %v: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out, nil
}

// rendered is what `tokenvendor render` prints.
type rendered struct {
	RoleArn         string
	RoleSessionName string
	ExternalID      string `json:"ExternalId"`
	Policy          json.RawMessage
	Tags            []struct{ Key, Value string }
}

func render(config, profile, tenant string) (rendered, error) {
	var r rendered
	out, err := tokenvendor("render", "--config", config, "--profile", profile, "--tenant", tenant)
	if err != nil {
		return r, err
	}
	err = json.Unmarshal(out, &r)
	return r, err
}

// Decisions: the evaluator's Allowed, or a deny of either kind.
const (
	allowed = "Allowed"
	denied  = "denied"
)

// The two ways every row is decided: as AWS would with the access role of
// iam.yaml, and with the role's own policy widened to its permissions
// boundary, so that the session policy alone confines the session.
const (
	asDeployed = "with the role of iam.yaml"
	widened    = "with the role widened to its boundary"
)

// row is one request of the table: made with the credentials of a session
// vended for tenant, carrying the TenantID tag tokenvendor renders (or
// none, or another).
type row struct {
	why      string // the case, for docs/isolation.md
	tenant   string // the session's tenant: its policy and tag are rendered for it
	noTag    bool   // the session carries no TenantID tag
	tag      string // the session's TenantID tag instead of the rendered one
	action   string
	resource string
	context  map[string]any // the request's context, beside the principal tag
	want     string         // allowed or denied, as AWS decides with the role of iam.yaml
	// widened is the decision with the role's own policy widened to its
	// permissions boundary, the session policy alone confining the
	// session; "" means want.
	widened string
}

// example is one profile file and its table.
type example struct {
	config  string // path of the config file
	profile string
	rows    func(a *access) []row
}

func (e example) file() string { return filepath.Base(e.config) }

// examples are the profiles of this folder, each with its table.
func examples() []example {
	ex := func(profile string, rows func(a *access) []row) example {
		return example{config: filepath.Join(env.root, "examples", "profiles", profile+".yaml"), profile: profile, rows: rows}
	}
	return []example{
		ex("dynamodb-leadingkeys", func(a *access) []row { return dynamoDBRows(a, false) }),
		ex("dynamodb-abac", func(a *access) []row { return dynamoDBRows(a, true) }),
		ex("s3-prefix", func(a *access) []row { return s3Rows(a, false) }),
		ex("s3-abac", func(a *access) []row { return s3Rows(a, true) }),
		ex("kms-context", kmsRows),
		ex("secretsmanager-prefix", secretRows),
		ex("bedrock-cost", bedrockRows),
	}
}

// dynamoDBRows are the table of a DynamoDB profile. With abac the session
// policy does not name the keys: widen the role and other tenants' items
// are reachable.
func dynamoDBRows(a *access, abac bool) []row {
	keys := func(k ...string) map[string]any { return map[string]any{"dynamodb:LeadingKeys": k} }
	leak := map[bool]string{false: denied, true: allowed}[abac]
	// With ABAC the tag alone decides: a session tagged with another tenant
	// than its policy was rendered for (tokenvendor never makes one) reaches
	// that tenant's items.
	retagged := map[bool]string{false: denied, true: allowed}[abac]
	rows := []row{
		{why: "own partition", tenant: "acme", action: "dynamodb:GetItem", context: keys("TENANT#acme"), want: allowed},
		{why: "own sub-partition", tenant: "acme", action: "dynamodb:Query", context: keys("TENANT#acme#ORDERS"), want: allowed},
		{why: "own keys in a batch", tenant: "acme", action: "dynamodb:BatchWriteItem", context: keys("TENANT#acme", "TENANT#acme#ORDERS"), want: allowed},
		{why: "another tenant", tenant: "acme", action: "dynamodb:GetItem", context: keys("TENANT#globex"), want: denied, widened: leak},
		{why: "acme to acme2 (prefix trap)", tenant: "acme", action: "dynamodb:GetItem", context: keys("TENANT#acme2"), want: denied, widened: leak},
		{why: "acme to acme2's sub-partition", tenant: "acme", action: "dynamodb:Query", context: keys("TENANT#acme2#ORDERS"), want: denied, widened: leak},
		{why: "acme2 to acme (prefix trap)", tenant: "acme2", action: "dynamodb:GetItem", context: keys("TENANT#acme"), want: denied, widened: leak},
		{why: "TENANT#acme#x against TENANT#acme2", tenant: "acme2", action: "dynamodb:Query", context: keys("TENANT#acme#x"), want: denied, widened: leak},
		{why: "batch write with one foreign key", tenant: "acme", action: "dynamodb:BatchWriteItem", context: keys("TENANT#acme", "TENANT#acme#ORDERS", "TENANT#globex"), want: denied, widened: leak},
		{why: "batch read with one acme2 key", tenant: "acme", action: "dynamodb:BatchGetItem", context: keys("TENANT#acme", "TENANT#acme2"), want: denied, widened: leak},
		{why: "Scan: no leading keys", tenant: "acme", action: "dynamodb:Scan", want: denied},
		{why: "request without leading keys (the Null guard)", tenant: "acme", action: "dynamodb:Query", want: denied, widened: leak},
		{why: "session without the TenantID tag", tenant: "acme", noTag: true, action: "dynamodb:GetItem", context: keys("TENANT#acme"), want: denied, widened: allowed},
		{why: "session tagged with another tenant", tenant: "acme", tag: "acme2", action: "dynamodb:GetItem", context: keys("TENANT#acme2"), want: retagged},
	}
	for i := range rows {
		rows[i].resource = a.Table
	}
	return rows
}

// s3Rows are the table of an S3 profile. Every request comes over TLS
// unless it says otherwise: the bucket policy denies plain HTTP.
func s3Rows(a *access, abac bool) []row {
	leak := map[bool]string{false: denied, true: allowed}[abac]
	retagged := leak // the tag alone decides, with ABAC
	object := func(key string) string { return a.Bucket + "/" + key }
	prefix := func(p string) map[string]any { return map[string]any{"s3:prefix": p} }
	rows := []row{
		{why: "own object", tenant: "acme", action: "s3:GetObject", resource: object("acme/invoices/1.pdf"), want: allowed},
		{why: "own object written", tenant: "acme", action: "s3:PutObject", resource: object("acme/invoices/2.pdf"), want: allowed},
		{why: "own prefix listed", tenant: "acme", action: "s3:ListBucket", resource: a.Bucket, context: prefix("acme/"), want: allowed},
		{why: "another tenant", tenant: "acme", action: "s3:GetObject", resource: object("globex/invoices/1.pdf"), want: denied, widened: leak},
		{why: "acme to acme2 (prefix trap)", tenant: "acme", action: "s3:GetObject", resource: object("acme2/invoices/1.pdf"), want: denied, widened: leak},
		{why: "acme to acme2, deleting", tenant: "acme", action: "s3:DeleteObject", resource: object("acme2/invoices/1.pdf"), want: denied, widened: leak},
		{why: "acme2 to acme (prefix trap)", tenant: "acme2", action: "s3:GetObject", resource: object("acme/invoices/1.pdf"), want: denied, widened: leak},
		{why: "acme2's prefix listed", tenant: "acme", action: "s3:ListBucket", resource: a.Bucket, context: prefix("acme2/"), want: denied, widened: leak},
		{why: "prefix acme without the / (lists acme2/ too)", tenant: "acme", action: "s3:ListBucket", resource: a.Bucket, context: prefix("acme"), want: denied, widened: leak},
		{why: "acme's prefix listed by acme2", tenant: "acme2", action: "s3:ListBucket", resource: a.Bucket, context: prefix("acme/"), want: denied, widened: leak},
		{why: "whole bucket listed: no s3:prefix", tenant: "acme", action: "s3:ListBucket", resource: a.Bucket, want: denied, widened: leak},
		{why: "session without the TenantID tag", tenant: "acme", noTag: true, action: "s3:GetObject", resource: object("acme/invoices/1.pdf"), want: denied, widened: allowed},
		{why: "session tagged with another tenant", tenant: "acme", tag: "acme2", action: "s3:GetObject", resource: object("acme2/invoices/1.pdf"), want: retagged},
		{why: "own object over plain HTTP", tenant: "acme", action: "s3:GetObject", resource: object("acme/invoices/1.pdf"), context: map[string]any{"aws:SecureTransport": "false"}, want: denied},
	}
	for i := range rows {
		if rows[i].context == nil {
			rows[i].context = map[string]any{}
		}
		if _, ok := rows[i].context["aws:SecureTransport"]; !ok {
			rows[i].context["aws:SecureTransport"] = "true"
		}
	}
	return rows
}

// kmsRows are the table of kms-context: KMS sends the encryption context
// as kms:EncryptionContext:<key> and its keys as kms:EncryptionContextKeys.
func kmsRows(a *access) []row {
	encryption := func(pairs ...string) map[string]any {
		c := map[string]any{}
		var keys []string
		for i := 0; i+1 < len(pairs); i += 2 {
			c["kms:EncryptionContext:"+pairs[i]] = pairs[i+1]
			keys = append(keys, pairs[i])
		}
		c["kms:EncryptionContextKeys"] = keys
		return c
	}
	rows := []row{
		{why: "own data key", tenant: "acme", action: "kms:GenerateDataKey", context: encryption("tenant", "acme"), want: allowed},
		{why: "own context and more pairs", tenant: "acme", action: "kms:Encrypt", context: encryption("tenant", "acme", "table", "Orders"), want: allowed},
		{why: "own ciphertext", tenant: "acme", action: "kms:Decrypt", context: encryption("tenant", "acme"), want: allowed},
		{why: "another tenant's ciphertext", tenant: "acme", action: "kms:Decrypt", context: encryption("tenant", "globex"), want: denied},
		{why: "acme to acme2 (prefix trap)", tenant: "acme", action: "kms:Decrypt", context: encryption("tenant", "acme2"), want: denied},
		{why: "acme2 to acme (prefix trap)", tenant: "acme2", action: "kms:Decrypt", context: encryption("tenant", "acme"), want: denied},
		{why: "data key for acme2", tenant: "acme", action: "kms:GenerateDataKey", context: encryption("tenant", "acme2"), want: denied},
		{why: "no encryption context", tenant: "acme", action: "kms:Decrypt", want: denied},
		{why: "context without the tenant pair", tenant: "acme", action: "kms:Decrypt", context: encryption("table", "Orders"), want: denied},
		{why: "session without the TenantID tag", tenant: "acme", noTag: true, action: "kms:Decrypt", context: encryption("tenant", "acme"), want: denied, widened: allowed},
		{why: "session tagged with another tenant", tenant: "acme", tag: "acme2", action: "kms:Decrypt", context: encryption("tenant", "acme2"), want: denied},
	}
	for i := range rows {
		rows[i].resource = a.Key
	}
	return rows
}

// secretRows are the table of secretsmanager-prefix. Secrets Manager ends
// every secret's ARN with - and six characters.
func secretRows(*access) []row {
	secret := func(name string) string {
		return "arn:aws:secretsmanager:" + region + ":" + account + ":secret:" + name + "-AbCdEf"
	}
	return []row{
		{why: "own secret", tenant: "acme", action: "secretsmanager:GetSecretValue", resource: secret("tenant/acme/db-password"), want: allowed},
		{why: "own secret described", tenant: "acme", action: "secretsmanager:DescribeSecret", resource: secret("tenant/acme/db-password"), want: allowed},
		{why: "another tenant", tenant: "acme", action: "secretsmanager:GetSecretValue", resource: secret("tenant/globex/db-password"), want: denied},
		{why: "acme to acme2 (prefix trap)", tenant: "acme", action: "secretsmanager:GetSecretValue", resource: secret("tenant/acme2/db-password"), want: denied},
		{why: "acme2 to acme (prefix trap)", tenant: "acme2", action: "secretsmanager:GetSecretValue", resource: secret("tenant/acme/db-password"), want: denied},
		{why: "secret named like the tenant, outside its folder", tenant: "acme", action: "secretsmanager:GetSecretValue", resource: secret("tenant/acme"), want: denied},
		{why: "session without the TenantID tag", tenant: "acme", noTag: true, action: "secretsmanager:GetSecretValue", resource: secret("tenant/acme/db-password"), want: denied, widened: allowed},
		{why: "session tagged with another tenant", tenant: "acme", tag: "acme2", action: "secretsmanager:GetSecretValue", resource: secret("tenant/acme2/db-password"), want: denied},
	}
}

// bedrockRows are the table of bedrock-cost: what a tenant may run on
// Amazon Bedrock, and what would bill its use to another tenant.
// Converse and ConverseStream are authorized as InvokeModel and
// InvokeModelWithResponseStream (the Service Authorization Reference has
// no action of their own). A call through an application inference
// profile is authorized on the profile and on each model behind it, two
// rows here; the model's row names the profile by bedrock:InferenceProfileArn
// alone, so the profile's own row is what tells acme's from globex's.
func bedrockRows(*access) []row {
	profile := func(id string) string {
		return "arn:aws:bedrock:" + region + ":" + account + ":application-inference-profile/" + id
	}
	tagged := func(tenant string) map[string]any { return map[string]any{"aws:ResourceTag/TenantID": tenant} }
	const model = "arn:aws:bedrock:" + region + "::foundation-model/amazon.nova-lite-v1:0"
	// A model in another Region, where a cross-Region profile routes.
	const modelElsewhere = "arn:aws:bedrock:us-west-2::foundation-model/amazon.nova-lite-v1:0"
	through := func(arn string) map[string]any { return map[string]any{"bedrock:InferenceProfileArn": arn} }
	const systemProfile = "arn:aws:bedrock:" + region + ":" + account + ":inference-profile/us.amazon.nova-lite-v1:0"
	return []row{
		{why: "own inference profile (InvokeModel, Converse)", tenant: "acme", action: "bedrock:InvokeModel", resource: profile("acme-chat"), context: tagged("acme"), want: allowed},
		{why: "own inference profile, streaming (ConverseStream)", tenant: "acme", action: "bedrock:InvokeModelWithResponseStream", resource: profile("acme-chat"), context: tagged("acme"), want: allowed},
		{why: "the model behind its profile", tenant: "acme", action: "bedrock:InvokeModel", resource: model, context: through(profile("acme-chat")), want: allowed},
		{why: "the model behind its profile, in another Region", tenant: "acme", action: "bedrock:InvokeModelWithResponseStream", resource: modelElsewhere, context: through(profile("acme-chat")), want: allowed},
		{why: "another tenant's inference profile (billed to globex)", tenant: "acme", action: "bedrock:InvokeModel", resource: profile("globex-chat"), context: tagged("globex"), want: denied},
		{why: "acme to acme2's profile (prefix trap)", tenant: "acme", action: "bedrock:InvokeModel", resource: profile("acme2-chat"), context: tagged("acme2"), want: denied},
		{why: "acme2 to acme's profile (prefix trap)", tenant: "acme2", action: "bedrock:InvokeModelWithResponseStream", resource: profile("acme-chat"), context: tagged("acme"), want: denied},
		{why: "a profile without the TenantID tag", tenant: "acme", action: "bedrock:InvokeModel", resource: profile("shared-chat"), want: denied},
		{why: "the model directly, without a profile", tenant: "acme", action: "bedrock:InvokeModel", resource: model, want: denied},
		{why: "a cross-Region (system) inference profile", tenant: "acme", action: "bedrock:InvokeModel", resource: systemProfile, want: denied},
		{why: "the model behind a system inference profile", tenant: "acme", action: "bedrock:InvokeModel", resource: model, context: through(systemProfile), want: denied},
		{why: "the model behind another account's profile", tenant: "acme", action: "bedrock:InvokeModel", resource: model,
			context: through("arn:aws:bedrock:" + region + ":999999999999:application-inference-profile/acme-chat"), want: denied},
		{why: "tagging another tenant's profile as its own", tenant: "acme", action: "bedrock:TagResource", resource: profile("globex-chat"),
			context: map[string]any{"aws:ResourceTag/TenantID": "globex", "aws:RequestTag/TenantID": "acme", "aws:TagKeys": []string{"TenantID"}}, want: denied},
		{why: "creating an inference profile", tenant: "acme", action: "bedrock:CreateInferenceProfile", resource: profile("acme-new"),
			context: map[string]any{"aws:RequestTag/TenantID": "acme", "aws:TagKeys": []string{"TenantID"}}, want: denied},
		{why: "session without the TenantID tag", tenant: "acme", noTag: true, action: "bedrock:InvokeModel", resource: profile("acme-chat"), context: tagged("acme"), want: denied, widened: allowed},
		{why: "session tagged with another tenant", tenant: "acme", tag: "acme2", action: "bedrock:InvokeModel", resource: profile("acme2-chat"), context: tagged("acme2"), want: denied},
	}
}

// result is the evaluator's answer for one simulation (iamsim/simulate.mjs).
type result struct {
	ID                  string          `json:"id"`
	Decision            string          `json:"decision"`
	IgnoredContextKeys  []string        `json:"ignoredContextKeys"`
	RestoredContextKeys []string        `json:"restoredContextKeys"`
	ResourceType        string          `json:"resourceType"`
	Errors              json.RawMessage `json:"errors"`
}

type simulation struct {
	ID         string `json:"id"`
	Simulation any    `json:"simulation"`
}

// answer is what simulate.mjs prints.
type answer struct {
	Versions            map[string]string `json:"versions"`
	Results             []result          `json:"results"`
	ConditionKeyActions map[string]bool   `json:"conditionKeyActions"`
}

// evaluate runs one node process for the whole batch.
func evaluate(t *testing.T, batch map[string]any) answer {
	t.Helper()
	in, err := json.Marshal(batch)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", filepath.Join(env.root, "examples", "profiles", "iamsim", "simulate.mjs"), filepath.Join(env.tools, "iamsim"))
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the IAM evaluator failed: %v\n%s", err, stderr.Bytes())
	}
	var a answer
	if err := json.Unmarshal(out, &a); err != nil {
		t.Fatalf("the IAM evaluator's answer %q: %v", out, err)
	}
	if v := a.Versions["iam-simulate"]; v != "0.1.173" {
		t.Fatalf("@cloud-copilot/iam-simulate %s, want 0.1.173 (run scripts/tools.sh)", v)
	}
	return a
}

// suite is a set of examples decided with one access role.
type suite struct {
	access   *access
	examples []example
}

// decided is a row with the evaluator's two decisions: with the role of
// the template, and with the role widened to its boundary.
type decided struct {
	example     example
	row         row
	session     string // the session's tenant and tag, for the table
	id          string // of its simulations
	aws, widest result
}

// decide renders every example's session for each tenant its rows need
// and has the evaluator decide every row of every suite, in one process.
func decide(t *testing.T, suites ...suite) [][]decided {
	t.Helper()
	var sims []simulation
	out := make([][]decided, len(suites))
	renders := map[[3]string]rendered{}
	for si, s := range suites {
		for _, ex := range s.examples {
			rows := ex.rows(s.access)
			if len(rows) == 0 {
				t.Fatalf("%s has no rows", ex.file())
			}
			for ri, r := range rows {
				k := [3]string{ex.config, ex.profile, r.tenant}
				rd, ok := renders[k]
				if !ok {
					var err error
					if rd, err = render(ex.config, ex.profile, r.tenant); err != nil {
						t.Fatal(err)
					}
					renders[k] = rd
				}
				d := decided{example: ex, row: r, session: r.tenant}
				context := maps.Clone(r.context)
				if context == nil {
					context = map[string]any{}
				}
				for _, tag := range rd.Tags {
					value := tag.Value
					switch {
					case r.noTag:
						continue
					case r.tag != "" && tag.Key == "TenantID":
						value = r.tag
					}
					context["aws:PrincipalTag/"+tag.Key] = value
				}
				switch {
				case r.noTag:
					d.session += ", no tag"
				case r.tag != "":
					d.session += ", tag " + r.tag
				}
				var resourcePolicy any
				switch {
				case strings.HasPrefix(r.action, "s3:"):
					resourcePolicy = s.access.BucketPolicy
				case strings.HasPrefix(r.action, "kms:"):
					resourcePolicy = s.access.KeyPolicy
				}
				principal := "arn:aws:sts::" + account + ":assumed-role/" + s.access.RoleName + "/" + rd.RoleSessionName
				base := map[string]any{
					"request": map[string]any{
						"principal":        principal,
						"action":           r.action,
						"resource":         map[string]any{"resource": r.resource, "accountId": account},
						"contextVariables": context,
					},
					"sessionPolicy":              rd.Policy,
					"permissionBoundaryPolicies": s.access.Boundary,
					"serviceControlPolicies":     []any{},
					"resourceControlPolicies":    []any{},
				}
				if resourcePolicy != nil {
					base["resourcePolicy"] = resourcePolicy
				}
				awsSim, widest := maps.Clone(base), maps.Clone(base)
				awsSim["identityPolicies"] = slices.Concat(s.access.Identity, s.access.Attached)
				widest["identityPolicies"] = slices.Concat(s.access.Boundary, s.access.Attached)
				d.id = fmt.Sprintf("%d/%s/%d", si, ex.profile, ri)
				sims = append(sims, simulation{ID: d.id + "/aws", Simulation: awsSim}, simulation{ID: d.id + "/widened", Simulation: widest})
				out[si] = append(out[si], d)
			}
		}
	}
	byID := map[string]result{}
	for _, r := range evaluate(t, map[string]any{"simulations": sims}).Results {
		byID[r.ID] = r
	}
	for si := range out {
		for i := range out[si] {
			d := &out[si][i]
			d.aws, d.widest = byID[d.id+"/aws"], byID[d.id+"/widened"]
		}
	}
	return out
}

// problems lists what is wrong with a decided row: a decision other than
// the expected one, an error, or a context key the evaluator ignored (the
// row would then prove nothing).
func (d decided) problems() []string {
	var p []string
	check := func(layer string, r result, want string) {
		switch {
		case r.Decision == "error" || r.Decision == "":
			p = append(p, fmt.Sprintf("%s: the evaluator could not decide: %s", layer, r.Errors))
			return
		case (r.Decision == allowed) != (want == allowed):
			p = append(p, fmt.Sprintf("%s: decided %s, want %s", layer, r.Decision, want))
		}
		if len(r.IgnoredContextKeys) > 0 {
			p = append(p, fmt.Sprintf("%s: the evaluator ignored context keys %v, so the row proves nothing", layer, r.IgnoredContextKeys))
		}
		// Only kms:EncryptionContext:<key>, which iam-simulate 0.1.173 drops
		// for every action (iamsim/simulate.mjs), may be restored, and only
		// all of them.
		var contextKeys []string
		for k := range d.row.context {
			if strings.HasPrefix(k, "kms:EncryptionContext:") {
				contextKeys = append(contextKeys, k)
			}
		}
		restored := slices.Clone(r.RestoredContextKeys)
		slices.Sort(contextKeys)
		slices.Sort(restored)
		if !slices.Equal(restored, contextKeys) {
			p = append(p, fmt.Sprintf("%s: restored context keys %v, want %v", layer, restored, contextKeys))
		}
	}
	check(asDeployed, d.aws, d.row.want)
	want := d.row.widened
	if want == "" {
		want = d.row.want
	}
	check(widened, d.widest, want)
	return p
}

// TestEveryExampleIsACheckedConfig runs `tokenvendor check` on every file of
// this folder and holds each to what the proof assumes: one profile named
// like its file, the access role of iam.yaml, exactly the TenantID tag its
// trust requires, and a table.
func TestEveryExampleIsACheckedConfig(t *testing.T) {
	a := deployedAccess(t)
	files, err := filepath.Glob(filepath.Join(env.root, "examples", "profiles", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	tabled := map[string]bool{}
	for _, ex := range examples() {
		tabled[ex.file()] = true
	}
	name := regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	seen := map[string]string{}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if out, err := tokenvendor("check", "--config", f); err != nil {
				t.Fatal(err)
			} else if !strings.HasPrefix(string(out), "ok: 1 profile(s)") {
				t.Errorf("check: %s, want one profile", out)
			}
			profile := strings.TrimSuffix(filepath.Base(f), ".yaml")
			if !name.MatchString(profile) {
				t.Errorf("profile name %q does not match %s", profile, name)
			}
			if other, ok := seen[profile]; ok {
				t.Errorf("profile %s is also in %s", profile, other)
			}
			seen[profile] = f
			r, err := render(f, profile, "acme")
			if err != nil {
				t.Fatalf("the profile must be named like its file: %v", err)
			}
			if want := "arn:aws:iam::" + account + ":role/" + a.RoleName; r.RoleArn != want {
				t.Errorf("role_arn %s, want the access role of iam.yaml, %s", r.RoleArn, want)
			}
			if len(r.Tags) != 1 || r.Tags[0].Key != "TenantID" || r.Tags[0].Value != "acme" {
				t.Errorf("tags %v, want TenantID=acme alone (the access role's trust requires it)", r.Tags)
			}
			if !tabled[filepath.Base(f)] {
				t.Errorf("%s has no table in proof_test.go: nothing proves it", filepath.Base(f))
			}
		})
	}
}

// TestIsolationTable has @cloud-copilot/iam-simulate decide every example's
// table twice: as AWS would with the access role of iam.yaml (its inline
// policies, its permissions boundary, the bucket or key policy) and the
// session policy and tags `tokenvendor render` prints; and with the role's
// own policy widened to its boundary, where the session policy alone must
// confine the session. No row may leave a context key ignored.
func TestIsolationTable(t *testing.T) {
	a := deployedAccess(t)
	rows := decide(t, suite{access: a, examples: examples()})[0]
	for _, d := range rows {
		t.Run(d.example.profile+"/"+d.row.why, func(t *testing.T) {
			for _, p := range d.problems() {
				t.Error(p)
			}
		})
	}
	if *markdown {
		fmt.Print(table(rows))
	}
}

// table writes decided rows as a Markdown table.
func table(rows []decided) string {
	var b strings.Builder
	b.WriteString("| Example | Session | Request | Case | Expected | Decided | Role widened to its boundary |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, d := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", d.example.file(), d.session, describe(d.row), d.row.why,
			d.row.want, d.aws.Decision, d.widest.Decision)
	}
	return b.String()
}

// describe writes a request shortly: the action, the resource past the
// example data's own ARN, and the context that decides.
func describe(r row) string {
	_, action, _ := strings.Cut(r.action, ":")
	resource := r.resource
	switch {
	case strings.HasPrefix(resource, "arn:aws:s3:::"):
		_, resource, _ = strings.Cut(strings.TrimPrefix(resource, "arn:aws:s3:::"), "/")
	case strings.Contains(resource, ":secret:"):
		_, resource, _ = strings.Cut(resource, ":secret:")
	case strings.HasPrefix(resource, "arn:aws:bedrock:"):
		resource = bedrockResource(resource)
	default:
		resource = ""
	}
	var parts []string
	keys := slices.Sorted(maps.Keys(r.context))
	for _, k := range keys {
		v := r.context[k]
		switch {
		case k == "dynamodb:LeadingKeys":
			parts = append(parts, "keys "+strings.Join(v.([]string), ", "))
		case k == "s3:prefix":
			parts = append(parts, fmt.Sprintf("prefix %q", v))
		case strings.HasPrefix(k, "kms:EncryptionContext:"):
			parts = append(parts, strings.TrimPrefix(k, "kms:EncryptionContext:")+"="+fmt.Sprint(v))
		case k == "aws:SecureTransport" && v == "false":
			parts = append(parts, "over HTTP")
		case k == "aws:ResourceTag/TenantID":
			parts = append(parts, fmt.Sprintf("tagged TenantID=%s", v))
		case k == "aws:RequestTag/TenantID":
			parts = append(parts, fmt.Sprintf("new tag TenantID=%s", v))
		case k == "bedrock:InferenceProfileArn":
			parts = append(parts, "through `"+bedrockResource(v.(string))+"`")
		}
	}
	out := "`" + action + "`"
	switch {
	case r.action == "s3:ListBucket":
		out += " the bucket"
	case resource != "":
		out += " `" + resource + "`"
	}
	switch {
	case strings.HasPrefix(r.action, "kms:") && len(parts) > 0:
		out += " context " + strings.Join(parts, ", ")
	case strings.HasPrefix(r.action, "kms:"):
		out += " no context"
	case len(parts) > 0:
		out += " " + strings.Join(parts, ", ")
	}
	return out
}

// bedrockResource writes a Bedrock ARN shortly: its resource, with the
// Region when it is not the example's and the account when it is another.
func bedrockResource(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) < 6 {
		return arn
	}
	out := parts[5]
	if parts[4] != "" && parts[4] != account {
		out = parts[4] + ":" + out
	}
	if parts[3] != region {
		out = parts[3] + ": " + out
	}
	return out
}

// TestProofCanFail widens one template at a time, on a copy, and sees the
// table fail: a session template that reaches other tenants' keys or
// objects (which `tokenvendor check` still accepts: the lint cannot see
// every widening), and the role's ABAC statement of iam.yaml.
func TestProofCanFail(t *testing.T) {
	a := deployedAccess(t)
	byProfile := map[string]example{}
	for _, ex := range examples() {
		byProfile[ex.profile] = ex
	}
	flipConfig := func(profile, from, to string) example {
		ex := byProfile[profile]
		b, err := os.ReadFile(ex.config)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(from)) {
			t.Fatalf("%s does not contain %s", ex.file(), from)
		}
		// The lint refuses these widenings; a profile that claims the role
		// isolates it (isolation: role) is not held to naming the tenant,
		// so the table is what must see them.
		b = bytes.Replace(b, []byte(from), []byte(to), 1)
		if !bytes.Contains(b, []byte("\n    isolation: role\n")) {
			b = bytes.Replace(b, []byte("  - name: "+profile+"\n"), []byte("  - name: "+profile+"\n    isolation: role\n"), 1)
		}
		ex.config = filepath.Join(t.TempDir(), ex.file())
		if err := os.WriteFile(ex.config, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := tokenvendor("check", "--config", ex.config); err != nil {
			t.Fatalf("the widened copy must pass check, or the table never sees it: %v", err)
		}
		return ex
	}
	src, err := os.ReadFile(filepath.Join(env.root, "deploy", "cloudformation", "iam.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const ownObjects = "${Bucket.Arn}/${!aws:PrincipalTag/TenantID}/*"
	if !bytes.Contains(src, []byte(ownObjects)) {
		t.Fatalf("iam.yaml does not contain %s", ownObjects)
	}
	wideRole, err := loadAccess(bytes.Replace(src, []byte(ownObjects), []byte("${Bucket.Arn}/*"), 1))
	if err != nil {
		t.Fatal(err)
	}
	const ownProfiles = `
                Condition:
                  StringEquals:
                    aws:ResourceTag/TenantID: ${aws:PrincipalTag/TenantID}
`
	if !bytes.Contains(src, []byte(ownProfiles)) {
		t.Fatalf("iam.yaml does not contain %s", ownProfiles)
	}
	anyProfileRole, err := loadAccess(bytes.Replace(src, []byte(ownProfiles), []byte("\n"), 1))
	if err != nil {
		t.Fatal(err)
	}

	flips := []struct {
		name  string
		suite suite
		// The layer whose rows must now fail (by their why). In the other
		// layer, the rows of sessions tagged as tokenvendor tags them (their
		// own tenant) still pass: the other layer still isolates.
		layer, holds string
		fail         []string
	}{
		{
			name:  "LeadingKeys TENANT#* in the session template",
			suite: suite{a, []example{flipConfig("dynamodb-leadingkeys", `"TENANT#{{ .TenantID }}#*"`, `"TENANT#*"`)}},
			// The role's own leading-keys statement still holds.
			layer: widened, holds: asDeployed,
			fail: []string{"another tenant", "acme to acme2 (prefix trap)", "TENANT#acme#x against TENANT#acme2", "batch write with one foreign key"},
		},
		{
			name: "the whole bucket beside the tenant's prefix in the session template",
			suite: suite{a, []example{flipConfig("s3-prefix", `"Resource":"arn:aws:s3:::{{ .Vars.bucket }}/{{ .TenantID }}/*"`,
				`"Resource":["arn:aws:s3:::{{ .Vars.bucket }}/{{ .TenantID }}/*","arn:aws:s3:::{{ .Vars.bucket }}/*"]`)}},
			layer: widened, holds: asDeployed,
			fail: []string{"another tenant", "acme to acme2 (prefix trap)", "acme2 to acme (prefix trap)"},
		},
		{
			name: "every tenant's inference profiles in the session template",
			suite: suite{a, []example{flipConfig("bedrock-cost", `"Condition":{"StringEquals":{"aws:ResourceTag/TenantID":"{{ .TenantID }}"}}}`,
				`"Condition":{"StringLike":{"aws:ResourceTag/TenantID":"*"}}}`)}},
			// The role's own statement on the profiles' tag still holds.
			layer: widened, holds: asDeployed,
			fail: []string{"another tenant's inference profile (billed to globex)", "acme to acme2's profile (prefix trap)", "acme2 to acme's profile (prefix trap)"},
		},
		{
			// The session template names the tenant too, so only a session
			// without the tag (which tokenvendor never makes) shows it.
			name:  "the role's inference profiles without the TenantID tag in iam.yaml",
			suite: suite{anyProfileRole, []example{byProfile["bedrock-cost"]}},
			layer: asDeployed, holds: widened,
			fail: []string{"session without the TenantID tag"},
		},
		{
			name:  "the role's objects without the TenantID tag in iam.yaml",
			suite: suite{wideRole, []example{byProfile["s3-abac"]}},
			layer: asDeployed, holds: widened,
			fail: []string{"another tenant", "acme to acme2 (prefix trap)", "acme2 to acme (prefix trap)", "acme to acme2, deleting"},
		},
	}
	var suites []suite
	for _, f := range flips {
		suites = append(suites, f.suite)
	}
	results := decide(t, suites...)
	for i, f := range flips {
		t.Run(f.name, func(t *testing.T) {
			failed := map[string]bool{}
			for _, d := range results[i] {
				for _, p := range d.problems() {
					switch {
					case strings.HasPrefix(p, f.layer+": decided"):
						failed[d.row.why] = true
					case strings.HasPrefix(p, f.holds+": decided") && (d.row.noTag || d.row.tag != ""):
						// A session tagged with another tenant than its
						// policy's: one layer alone is not meant to hold it.
					default:
						t.Errorf("%s: %s", d.row.why, p)
					}
				}
			}
			for _, why := range f.fail {
				if !failed[why] {
					t.Errorf("row %q still passes: the table does not see the widening", why)
				}
			}
		})
	}
}

// TestLintKnowsWhichActionsCarryLeadingKeys checks the lint's list against
// the Service Authorization Reference data the evaluator decides with:
// beside a dynamodb:LeadingKeys condition, every DynamoDB action that
// carries the key is accepted and every other refused.
func TestLintKnowsWhichActionsCarryLeadingKeys(t *testing.T) {
	actions := evaluate(t, map[string]any{"conditionKeyActions": map[string]string{"service": "dynamodb", "key": "dynamodb:LeadingKeys"}}).ConditionKeyActions
	if len(actions) < 50 || !actions["Query"] || actions["Scan"] {
		t.Fatalf("the evaluator's DynamoDB actions look wrong: %v", actions)
	}
	tenants, err := policy.NewTenantRule("")
	if err != nil {
		t.Fatal(err)
	}
	names := slices.Collect(maps.Keys(actions))
	sort.Strings(names)
	for _, name := range names {
		doc := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"dynamodb:` + name + `",
			"Resource":"arn:aws:dynamodb:us-east-1:123456789012:table/Orders",
			"Condition":{"ForAllValues:StringLike":{"dynamodb:LeadingKeys":["TENANT#{{ .TenantID }}","TENANT#{{ .TenantID }}#*"]},
			"Null":{"dynamodb:LeadingKeys":"false"}}}]}`
		tmpl, err := policy.Compile(policy.Spec{Profile: "p", Policy: doc}, tenants)
		if err != nil {
			t.Fatal(err)
		}
		err = tmpl.Lint()
		if carries := actions[name]; carries != (err == nil) {
			t.Errorf("dynamodb:%s carries dynamodb:LeadingKeys: %v; Lint() = %v", name, carries, err)
		}
	}
}

// deployedAccess is the access role and its data as
// deploy/cloudformation/iam.yaml deploys them.
func deployedAccess(t *testing.T) *access {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(env.root, "deploy", "cloudformation", "iam.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := loadAccess(src)
	if err != nil {
		t.Fatalf("deploy/cloudformation/iam.yaml: %v", err)
	}
	return a
}
