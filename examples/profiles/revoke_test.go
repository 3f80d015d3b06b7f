package profiles_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

// The cases of the revocation table, for every action of every example.
const (
	tenantBefore   = "revoked tenant, issued before its cut-off"
	tenantAt       = "revoked tenant, issued at its cut-off"
	tenantAfter    = "revoked tenant, issued after its cut-off"
	prefixBefore   = "acme2 (acme's prefix), issued before acme's cut-off"
	otherBefore    = "another tenant, issued before acme's cut-off"
	untaggedBefore = "session without the TenantID tag, issued before acme's cut-off"
	callerBefore   = "revoked caller in another tenant, issued before its cut-off"
	callerAfter    = "revoked caller in another tenant, issued after its cut-off"
	neighbour      = "another caller of that tenant, issued before the caller's cut-off"
)

// moto is an IAM of moto_server's, and a client of it.
type moto struct {
	endpoint string
	iam      *iam.Client
}

func startMoto(t *testing.T) moto {
	t.Helper()
	endpoint, stop, err := testsupport.StartMoto()
	if err != nil {
		t.Fatalf("moto_server, the IAM the revocation policy is written to: %v", err)
	}
	t.Cleanup(stop)
	return moto{endpoint: endpoint, iam: iam.New(iam.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("testing", "testing", ""),
	})}
}

// createPolicy creates a managed policy holding doc, as CloudFormation
// would, and returns its ARN.
func (m moto) createPolicy(t *testing.T, name string, doc any) string {
	t.Helper()
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.iam.CreatePolicy(context.Background(), &iam.CreatePolicyInput{PolicyName: aws.String(name), PolicyDocument: aws.String(string(raw))})
	if err != nil {
		t.Fatalf("create policy %s in moto: %v", name, err)
	}
	return aws.ToString(out.Policy.Arn)
}

// versions returns the policy's version ids, oldest first, the default
// one and its document.
func (m moto) versions(t *testing.T, arn string) (ids []string, defaultID, document string) {
	t.Helper()
	ctx := context.Background()
	list, err := m.iam.ListPolicyVersions(ctx, &iam.ListPolicyVersionsInput{PolicyArn: aws.String(arn)})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range list.Versions {
		ids = append(ids, aws.ToString(v.VersionId))
		if v.IsDefaultVersion {
			defaultID = aws.ToString(v.VersionId)
		}
	}
	number := func(id string) int { n, _ := strconv.Atoi(strings.TrimPrefix(id, "v")); return n }
	slices.SortFunc(ids, func(a, b string) int { return cmp.Compare(number(a), number(b)) })
	got, err := m.iam.GetPolicyVersion(ctx, &iam.GetPolicyVersionInput{PolicyArn: aws.String(arn), VersionId: aws.String(defaultID)})
	if err != nil {
		t.Fatal(err)
	}
	document = aws.ToString(got.PolicyVersion.Document)
	if !strings.HasPrefix(document, "{") { // IAM URL-encodes it; moto does not
		if document, err = url.PathUnescape(document); err != nil {
			t.Fatal(err)
		}
	}
	return ids, defaultID, document
}

// revoke runs the real `tokenvendor revoke` against moto, with dummy
// credentials and nothing of the machine's AWS configuration.
func (m moto) revoke(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(env.bin, append([]string{"revoke"}, args...)...)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
		"AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing", "AWS_EC2_METADATA_DISABLED=true",
		"AWS_ENDPOINT_URL_IAM=" + m.endpoint,
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// revocationConfig copies an example's config with the revocation policy
// and, when sourceIdentity, the caller sent as SourceIdentity.
func revocationConfig(t *testing.T, ex example, arn string, sourceIdentity bool) string {
	t.Helper()
	b, err := os.ReadFile(ex.config)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, "\nrevocation:\n  policy_arn: "+arn+"\n"...)
	if sourceIdentity {
		b = append(b, "session:\n  source_identity: true\n"...)
	}
	path := filepath.Join(t.TempDir(), ex.file())
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The placeholder document iam.yaml creates the revocation policy with.
func createdRevocationPolicy(t *testing.T, a *access) any {
	t.Helper()
	for _, p := range a.Attached {
		if p.Name == "RevocationPolicy" {
			return p.Policy
		}
	}
	t.Fatalf("iam.yaml attaches no RevocationPolicy to the access role: %v", a.Attached)
	return nil
}

// TestRevocationTable writes cut-offs with the real `tokenvendor revoke`
// into moto's IAM, a tenant's (from every example's config) and a
// caller's, reads the policy back, and has @cloud-copilot/iam-simulate
// decide, for every action of every example, with the policy attached to
// the access role: the revoked tenant's sessions issued before its cut-off
// are denied, later ones allowed, other tenants' and untagged sessions
// allowed; the revoked caller's sessions (by SourceIdentity) issued before
// its cut-off denied, in any tenant, and no one else's. moto evaluates no
// condition: it proves what is written, the evaluator what it means.
func TestRevocationTable(t *testing.T) {
	t.Parallel()
	a := deployedAccess(t)
	m := startMoto(t)
	arn := m.createPolicy(t, "tokenvendor-revocation", createdRevocationPolicy(t, a))
	now := time.Now().UTC().Truncate(time.Second)
	tenantCut, callerCut := now.Add(-20*time.Minute), now.Add(-10*time.Minute)

	// Every example's config passes the command's checks; the first run
	// writes, the others find the cut-off in force.
	for i, ex := range examples() {
		out, stderr, err := m.revoke(t, "--config", revocationConfig(t, ex, arn, false), "--tenant", "acme", "--before", tenantCut.Format(time.RFC3339))
		if err != nil {
			t.Fatalf("revoke with %s: %v\n%s", ex.file(), err, stderr)
		}
		want := map[bool]string{true: "written as version v2", false: "already in force in version v2, nothing written"}[i == 0]
		if !strings.HasPrefix(out, "revoked: sessions of tenant acme issued before "+tenantCut.Format(time.RFC3339)) || !strings.Contains(out, want) {
			t.Errorf("revoke with %s printed %q, want %q", ex.file(), out, want)
		}
	}
	out, stderr, err := m.revoke(t, "--config", revocationConfig(t, examples()[0], arn, true), "--tenant", "globex", "--subject", "orders-api", "--before", callerCut.Format(time.RFC3339))
	if err != nil {
		t.Fatalf("revoke --subject: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, "caller orders-api") || !strings.Contains(out, "written as version v3; 2 statement(s)") {
		t.Errorf("revoke --subject printed %q", out)
	}

	ids, defaultID, document := m.versions(t, arn)
	if !slices.Equal(ids, []string{"v1", "v2", "v3"}) || defaultID != "v3" {
		t.Fatalf("versions %v, default %s; want v1 (CloudFormation's), v2 (the tenant), v3 (the caller) the default", ids, defaultID)
	}
	want := `{"Version":"2012-10-17","Statement":[` +
		`{"Sid":"TenantsBefore` + tenantCut.Format("20060102T150405Z") + `","Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/TenantID":["acme"]},"DateLessThan":{"aws:TokenIssueTime":"` + tenantCut.Format(time.RFC3339) + `"}}},` +
		`{"Sid":"SubjectsBefore` + callerCut.Format("20060102T150405Z") + `","Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:SourceIdentity":["orders-api"]},"DateLessThan":{"aws:TokenIssueTime":"` + callerCut.Format(time.RFC3339) + `"}}}]}`
	if document != want {
		t.Fatalf("moto holds\n%s\nwant\n%s", document, want)
	}
	var written any
	if err := json.Unmarshal([]byte(document), &written); err != nil {
		t.Fatal(err)
	}

	// The table, with the policy read back; then with the policy as
	// iam.yaml creates it, and with the cut-offs' dates compared the wrong
	// way, where the rows that depend on the cut-offs must fail.
	revoked, created, flipped := *a, *a, *a
	revoked.Attached = []namedPolicy{{Name: "RevocationPolicy", Policy: written}}
	created.Attached = []namedPolicy{{Name: "RevocationPolicy", Policy: createdRevocationPolicy(t, a)}}
	var wrongWay any
	_ = json.Unmarshal([]byte(strings.ReplaceAll(document, "DateLessThan", "DateGreaterThan")), &wrongWay)
	flipped.Attached = []namedPolicy{{Name: "RevocationPolicy", Policy: wrongWay}}
	exs := revocationExamples(t, tenantCut, callerCut)
	results := decide(t, suite{&revoked, exs}, suite{&created, exs}, suite{&flipped, exs})

	covered := map[string]bool{}
	for _, d := range results[0] {
		t.Run(d.example.profile+"/"+d.row.why, func(t *testing.T) {
			for _, p := range d.problems() {
				t.Error(p)
			}
		})
		covered[d.example.profile+" "+d.row.action] = true
	}
	if len(covered) < 20 {
		t.Errorf("the table covers %d actions of the examples; the examples allow more", len(covered))
	}
	for i, f := range []struct {
		name string
		fail []string
	}{
		{"the policy as iam.yaml creates it denies nothing", []string{tenantBefore, callerBefore}},
		{"cut-offs compared the wrong way", []string{tenantBefore, tenantAfter, callerBefore, callerAfter}},
	} {
		t.Run(f.name, func(t *testing.T) {
			failed := map[string]bool{}
			for _, d := range results[i+1] {
				_, kind, _ := strings.Cut(d.row.why, ": ")
				for _, p := range d.problems() {
					if !strings.Contains(p, ": decided") || !slices.Contains(f.fail, kind) {
						t.Errorf("%s/%s: %s", d.example.profile, d.row.why, p)
					}
					failed[kind] = true
				}
			}
			for _, kind := range f.fail {
				if !failed[kind] {
					t.Errorf("rows %q still pass: the table does not see the change", kind)
				}
			}
		})
	}
}

// revocationExamples are the examples, each with the revocation table for
// every action its session policy allows: acme is cut off at tenantCut,
// the caller orders-api at callerCut.
func revocationExamples(t *testing.T, tenantCut, callerCut time.Time) []example {
	t.Helper()
	var out []example
	for _, ex := range examples() {
		r, err := render(ex.config, ex.profile, "acme")
		if err != nil {
			t.Fatal(err)
		}
		actions := allowedActions(t, r.Policy)
		if len(actions) == 0 {
			t.Fatalf("%s allows no action", ex.file())
		}
		ex.rows = func(a *access) []row {
			var rows []row
			for _, action := range actions {
				rows = append(rows, revocationRows(t, a, action, tenantCut, callerCut)...)
			}
			return rows
		}
		out = append(out, ex)
	}
	return out
}

// allowedActions are the actions of a session policy's Allow statements.
func allowedActions(t *testing.T, policy json.RawMessage) []string {
	t.Helper()
	var doc struct {
		Statement []struct {
			Effect string
			Action any
		}
	}
	if err := json.Unmarshal(policy, &doc); err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, s := range doc.Statement {
		if s.Effect != "Allow" {
			continue
		}
		switch a := s.Action.(type) {
		case string:
			actions = append(actions, a)
		case []any:
			for _, x := range a {
				actions = append(actions, x.(string))
			}
		}
	}
	slices.Sort(actions)
	return slices.Compact(actions)
}

// ownRequest is a request for action on tenant's own data, as the examples
// scope it.
func ownRequest(t *testing.T, a *access, action, tenant string) (string, map[string]any) {
	t.Helper()
	switch {
	case strings.HasPrefix(action, "dynamodb:"):
		return a.Table, map[string]any{"dynamodb:LeadingKeys": []string{"TENANT#" + tenant}}
	case action == "s3:ListBucket":
		return a.Bucket, map[string]any{"s3:prefix": tenant + "/", "aws:SecureTransport": "true"}
	case strings.HasPrefix(action, "s3:"):
		return a.Bucket + "/" + tenant + "/invoices/1.pdf", map[string]any{"aws:SecureTransport": "true"}
	case strings.HasPrefix(action, "kms:"):
		return a.Key, map[string]any{"kms:EncryptionContext:tenant": tenant, "kms:EncryptionContextKeys": []string{"tenant"}}
	case strings.HasPrefix(action, "secretsmanager:"):
		return "arn:aws:secretsmanager:" + region + ":" + account + ":secret:tenant/" + tenant + "/db-password-AbCdEf", map[string]any{}
	case strings.HasPrefix(action, "bedrock:"):
		// The tenant's own application inference profile.
		return "arn:aws:bedrock:" + region + ":" + account + ":application-inference-profile/" + tenant + "-chat", map[string]any{"aws:ResourceTag/TenantID": tenant}
	}
	t.Fatalf("no request known for %s: add one to ownRequest", action)
	return "", nil
}

// revocationRows are one action's rows: each session asks for its own
// tenant's data, which it may reach unless a cut-off denies it.
func revocationRows(t *testing.T, a *access, action string, tenantCut, callerCut time.Time) []row {
	t.Helper()
	issued := func(at time.Time) string { return at.UTC().Format(time.RFC3339) }
	request := func(kind, tenant string, at time.Time, sourceIdentity, want, wide string) row {
		resource, context := ownRequest(t, a, action, tenant)
		context = maps.Clone(context)
		context["aws:TokenIssueTime"] = issued(at)
		if sourceIdentity != "" {
			context["aws:SourceIdentity"] = sourceIdentity
		}
		return row{why: action + ": " + kind, tenant: tenant, action: action, resource: resource, context: context, want: want, widened: wide}
	}
	before := -5 * time.Minute
	untagged := request(untaggedBefore, "acme", tenantCut.Add(before), "", denied, allowed)
	untagged.noTag = true // the role's own policy needs the tag; widened, the session policy allows
	return []row{
		request(tenantBefore, "acme", tenantCut.Add(before), "", denied, ""),
		request(tenantAt, "acme", tenantCut, "", allowed, ""),
		request(tenantAfter, "acme", tenantCut.Add(time.Minute), "", allowed, ""),
		request(prefixBefore, "acme2", tenantCut.Add(before), "", allowed, ""),
		request(otherBefore, "initech", tenantCut.Add(before), "", allowed, ""),
		untagged,
		request(callerBefore, "globex", callerCut.Add(before), "orders-api", denied, ""),
		request(callerAfter, "globex", callerCut.Add(time.Minute), "orders-api", allowed, ""),
		request(neighbour, "globex", callerCut.Add(before), "billing-worker", allowed, ""),
	}
}

// TestRevokeKeepsToIAMsLimitsInMoto runs the real command against moto's
// IAM, which keeps five versions as IAM does: a sixth version deletes the
// oldest, and a policy that would outgrow 6,144 characters is refused with
// nothing written.
func TestRevokeKeepsToIAMsLimitsInMoto(t *testing.T) {
	t.Parallel()
	a := deployedAccess(t)
	m := startMoto(t)
	ex := examples()[0]
	before := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339)

	t.Run("five versions", func(t *testing.T) {
		arn := m.createPolicy(t, "rotation", createdRevocationPolicy(t, a))
		config := revocationConfig(t, ex, arn, false)
		for i := range 6 {
			out, stderr, err := m.revoke(t, "--config", config, "--tenant", fmt.Sprintf("tenant%d", i), "--before", before)
			if err != nil {
				t.Fatalf("revoke %d: %v\n%s", i, err, stderr)
			}
			if i == 4 && !strings.Contains(out, "(version v1 deleted: IAM keeps 5)") {
				t.Errorf("the fifth revoke printed %q, want v1 deleted", out)
			}
		}
		ids, defaultID, document := m.versions(t, arn)
		if !slices.Equal(ids, []string{"v3", "v4", "v5", "v6", "v7"}) || defaultID != "v7" {
			t.Errorf("versions %v, default %s; want v3 to v7, v7 the default", ids, defaultID)
		}
		if !strings.Contains(document, `["tenant0","tenant1","tenant2","tenant3","tenant4","tenant5"]`) {
			t.Errorf("the default version lost a tenant: %s", document)
		}
	})

	t.Run("full", func(t *testing.T) {
		ids := make([]string, 94)
		for i := range ids {
			ids[i] = fmt.Sprintf("t%059d", i)
		}
		cut := time.Now().UTC().Add(-30 * time.Minute).Format(time.RFC3339)
		full := map[string]any{"Version": "2012-10-17", "Statement": []any{map[string]any{
			"Sid": "Earlier", "Effect": "Deny", "Action": "*", "Resource": "*",
			"Condition": map[string]any{"StringEquals": map[string]any{"aws:PrincipalTag/TenantID": ids}, "DateLessThan": map[string]any{"aws:TokenIssueTime": cut}},
		}}}
		raw, _ := json.Marshal(full)
		if n := len(raw); n < 6144-200 || n > 6144 {
			t.Fatalf("the full policy takes %d characters: make it fit, with no room for another cut-off", n)
		}
		arn := m.createPolicy(t, "full", full)
		_, _, was := m.versions(t, arn)
		out, stderr, err := m.revoke(t, "--config", revocationConfig(t, ex, arn, false), "--tenant", "acme", "--before", before)
		if err == nil {
			t.Fatalf("revoke into a full policy succeeded: %s", out)
		}
		for _, want := range []string{"revocation policy full", "over IAM's 6144", "nothing was written", "Suspend the tenant"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("the refusal %q does not say %q", stderr, want)
			}
		}
		if ids, _, now := m.versions(t, arn); !slices.Equal(ids, []string{"v1"}) || now != was {
			t.Errorf("a refused revoke wrote: versions %v, document changed %v", ids, now != was)
		}
	})
}
