package revoke_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/policy"
	"github.com/tokenvendor/tokenvendor/internal/revoke"
)

const arn = "arn:aws:iam::123456789012:policy/tokenvendor-revocation"

var now = time.Date(2026, 12, 4, 16, 0, 0, 0, time.UTC)

// doc is a policy document holding statements, as tokenvendor writes it.
func doc(statements ...string) string {
	return `{"Version":"2012-10-17","Statement":[` + strings.Join(statements, ",") + `]}`
}

var placeholder = doc(revoke.PlaceholderStatement)

// cutoff is a cut-off statement as tokenvendor writes it, spelt out here
// rather than built by the package.
func cutoff(kind, key string, before time.Time, values ...string) string {
	return fmt.Sprintf(`{"Sid":"%sBefore%s","Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringEquals":{%q:["%s"]},"DateLessThan":{"aws:TokenIssueTime":%q}}}`,
		kind, before.UTC().Format("20060102T150405Z"), key, strings.Join(values, `","`), before.UTC().Format(time.RFC3339))
}

func tenants(before time.Time, ids ...string) string {
	return cutoff("Tenants", "aws:PrincipalTag/TenantID", before, ids...)
}

func subjects(before time.Time, ids ...string) string {
	return cutoff("Subjects", "aws:SourceIdentity", before, ids...)
}

func config(t *testing.T) revoke.Config {
	t.Helper()
	rule, err := policy.NewTenantRule("")
	if err != nil {
		t.Fatal(err)
	}
	return revoke.Config{PolicyARN: arn, LongestDuration: time.Hour, TenantRule: rule, Now: func() time.Time { return now }}
}

func TestApplyMergesTheCutoff(t *testing.T) {
	t0 := now.Add(-30 * time.Minute)
	foreign := `{"Sid":"ManualDeny","Effect":"Deny","Action":"s3:DeleteBucket","Resource":"*"}`
	tests := []struct {
		name        string
		current     string
		cut         revoke.Cutoff
		want        string
		wantWritten bool
		wantBefore  time.Time
		wantDropped int
		wantForeign int
	}{
		{
			name:    "the first cut-off replaces the placeholder",
			current: placeholder, cut: revoke.Cutoff{Tenant: "acme"},
			want: doc(tenants(now, "acme")), wantWritten: true, wantBefore: now,
		},
		{
			name:    "a tenant joins the statement of its cut-off",
			current: doc(tenants(t0, "globex")), cut: revoke.Cutoff{Tenant: "acme", Before: t0},
			want: doc(tenants(t0, "acme", "globex")), wantWritten: true, wantBefore: t0,
		},
		{
			name:    "a subject at the same cut-off has its own statement, after the tenants'",
			current: doc(tenants(t0, "acme")), cut: revoke.Cutoff{Subject: "orders-api", Before: t0},
			want: doc(tenants(t0, "acme"), subjects(t0, "orders-api")), wantWritten: true, wantBefore: t0,
		},
		{
			name:    "older cut-offs come first",
			current: doc(tenants(t0, "globex")), cut: revoke.Cutoff{Tenant: "acme"},
			want: doc(tenants(t0, "globex"), tenants(now, "acme")), wantWritten: true, wantBefore: now,
		},
		{
			name:    "a later cut-off replaces the tenant's earlier one",
			current: doc(tenants(t0, "acme", "globex")), cut: revoke.Cutoff{Tenant: "acme"},
			want: doc(tenants(t0, "globex"), tenants(now, "acme")), wantWritten: true, wantBefore: now,
		},
		{
			name:    "an earlier cut-off than the one in force changes nothing",
			current: doc(tenants(now, "acme")), cut: revoke.Cutoff{Tenant: "acme", Before: t0},
			want: doc(tenants(now, "acme")), wantBefore: now,
		},
		{
			name:    "the same cut-off again changes nothing",
			current: doc(tenants(now, "acme")), cut: revoke.Cutoff{Tenant: "acme"},
			want: doc(tenants(now, "acme")), wantBefore: now,
		},
		{
			name: "cut-offs as old as the longest duration are dropped",
			current: doc(tenants(now.Add(-61*time.Minute), "old"), tenants(now.Add(-time.Hour), "just-expired"),
				tenants(now.Add(-59*time.Minute), "alive")),
			cut:  revoke.Cutoff{Tenant: "acme"},
			want: doc(tenants(now.Add(-59*time.Minute), "alive"), tenants(now, "acme")), wantWritten: true, wantBefore: now, wantDropped: 2,
		},
		{
			name:    "a cut-off within a second is rounded up, never letting an earlier session through",
			current: placeholder, cut: revoke.Cutoff{Tenant: "acme", Before: now.Add(-1800 * time.Millisecond)},
			want: doc(tenants(now.Add(-time.Second), "acme")), wantWritten: true, wantBefore: now.Add(-time.Second),
		},
		{
			name:    "a cut-off given in another zone is written in UTC",
			current: placeholder, cut: revoke.Cutoff{Tenant: "acme", Before: t0.In(time.FixedZone("CET", 3600))},
			want: doc(tenants(t0, "acme")), wantWritten: true, wantBefore: t0,
		},
		{
			name:    "statements tokenvendor did not write are kept, after its own",
			current: doc(foreign), cut: revoke.Cutoff{Tenant: "acme"},
			want: doc(tenants(now, "acme"), foreign), wantWritten: true, wantBefore: now, wantForeign: 1,
		},
		{
			name: "a hand-written cut-off in another layout is read as one",
			current: `{"Statement": {"Sid": "Manual", "Effect": "Deny", "Action": "*", "Resource": "*",
				"Condition": {"DateLessThan": {"aws:TokenIssueTime": "2026-12-04T16:30:00+01:00"}, "StringEquals": {"aws:PrincipalTag/TenantID": "globex"}}},
				"Version": "2012-10-17"}`,
			cut:  revoke.Cutoff{Tenant: "acme", Before: t0},
			want: doc(tenants(t0, "acme", "globex")), wantWritten: true, wantBefore: t0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newFakeIAM(arn, tt.current)
			res, err := revoke.Apply(context.Background(), fake, config(t), tt.cut)
			if err != nil {
				t.Fatal(err)
			}
			id, got := fake.Default()
			switch {
			case !tt.wantWritten && got != tt.current:
				t.Errorf("the policy changed:\n%s", got)
			case tt.wantWritten && got != tt.want:
				t.Errorf("policy\n%s\nwant\n%s", got, tt.want)
			}
			if res.Written != tt.wantWritten || res.Version != id || !res.Before.Equal(tt.wantBefore) || res.Dropped != tt.wantDropped || res.Foreign != tt.wantForeign {
				t.Errorf("result %+v, want written %v, version %s, before %s, %d dropped, %d foreign", res, tt.wantWritten, id, tt.wantBefore, tt.wantDropped, tt.wantForeign)
			}
			if res.Characters != len(tt.want) || res.Statements != strings.Count(tt.want, `"Sid":"Tenants`)+strings.Count(tt.want, `"Sid":"Subjects`) {
				t.Errorf("result says %d characters and %d statements for\n%s", res.Characters, res.Statements, tt.want)
			}
		})
	}
}

func TestApplyKeepsToFiveVersions(t *testing.T) {
	tests := []struct {
		name        string
		versions    int
		defaultID   string
		wantDeleted string
		wantIDs     []string
	}{
		{name: "four versions: none deleted", versions: 4, defaultID: "v4", wantIDs: []string{"v1", "v2", "v3", "v4", "v5"}},
		{name: "five: the oldest deleted", versions: 5, defaultID: "v5", wantDeleted: "v1", wantIDs: []string{"v2", "v3", "v4", "v5", "v6"}},
		{name: "five, the oldest the default: the next oldest deleted", versions: 5, defaultID: "v1", wantDeleted: "v2", wantIDs: []string{"v1", "v3", "v4", "v5", "v6"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var docs []string
			for i := range tt.versions {
				docs = append(docs, doc(tenants(now.Add(-time.Duration(i+1)*time.Minute), fmt.Sprintf("tenant%d", i))))
			}
			fake := newFakeIAM(arn, docs...)
			fake.SetDefault(tt.defaultID)
			_, base := fake.Default()
			res, err := revoke.Apply(context.Background(), fake, config(t), revoke.Cutoff{Tenant: "acme"})
			if err != nil {
				t.Fatal(err)
			}
			if res.Deleted != tt.wantDeleted || !slices.Equal(fake.IDs(), tt.wantIDs) {
				t.Errorf("deleted %q, versions %v; want %q deleted, versions %v", res.Deleted, fake.IDs(), tt.wantDeleted, tt.wantIDs)
			}
			// The new version builds on the default, not on the newest.
			id, got := fake.Default()
			if id != "v6" && id != "v5" || !strings.Contains(got, `"acme"`) || !strings.Contains(got, strings.TrimSuffix(strings.TrimPrefix(base, `{"Version":"2012-10-17","Statement":[`), "]}")) {
				t.Errorf("default %s: %s; want the old default's statement and acme's", id, got)
			}
		})
	}
}

// fill is a policy whose default version holds n tenants of 60 characters
// cut off half an hour ago, in versions versions.
func fill(n, versions int) *fakeIAM {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("t%059d", i)
	}
	docs := make([]string, versions)
	for i := range docs {
		docs[i] = doc(tenants(now.Add(-30*time.Minute), ids...))
	}
	return newFakeIAM(arn, docs...)
}

func TestApplyFillsThePolicyToItsLimitAndRefusesBeyond(t *testing.T) {
	cfg := config(t)
	// Find how many tenants leave room for a new cut-off of a tenant whose
	// id is 1 to 63 characters long, and which length fills the policy to
	// exactly MaxCharacters.
	var n, length int
	for n = 1; ; n++ {
		res, err := revoke.Apply(context.Background(), fill(n, 1), cfg, revoke.Cutoff{Tenant: "x"})
		if err != nil {
			t.Fatalf("%d tenants: %v", n, err)
		}
		if room := revoke.MaxCharacters - res.Characters; room < 63 {
			length = 1 + room
			break
		}
	}
	id := func(length int) string { return "a" + strings.Repeat("b", length-1) }

	full := fill(n, 5)
	res, err := revoke.Apply(context.Background(), full, cfg, revoke.Cutoff{Tenant: id(length)})
	if err != nil {
		t.Fatalf("a policy of exactly %d characters: %v", revoke.MaxCharacters, err)
	}
	if _, got := full.Default(); res.Characters != revoke.MaxCharacters || len(got) != revoke.MaxCharacters || res.Deleted != "v1" {
		t.Fatalf("result %+v, document of %d characters: want exactly %d, v1 deleted", res, len(got), revoke.MaxCharacters)
	}

	over := fill(n, 5)
	before, _ := over.Default()
	_, err = revoke.Apply(context.Background(), over, cfg, revoke.Cutoff{Tenant: id(length + 1)})
	if !errors.Is(err, revoke.ErrTooLarge) {
		t.Fatalf("one character over: err = %v, want ErrTooLarge", err)
	}
	for _, want := range []string{fmt.Sprint(revoke.MaxCharacters + 1), fmt.Sprint(revoke.MaxCharacters), "nothing was written", "Suspend the tenant", "2026-12-04T15:30:00Z", "dropped at 2026-12-04T16:30:00Z"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	if after, _ := over.Default(); after != before || over.creates != 0 || over.deletes != 0 || len(over.IDs()) != 5 {
		t.Errorf("a refused revocation wrote: default %s -> %s, %d created, %d deleted", before, after, over.creates, over.deletes)
	}
}

func TestApplyRefusesWhatCannotBeWritten(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*revoke.Config)
		cut    revoke.Cutoff
		want   string
	}{
		{name: "wildcard tenant", cut: revoke.Cutoff{Tenant: "*"}, want: "tenant"},
		{name: "tenant prefix wildcard", cut: revoke.Cutoff{Tenant: "acme*"}, want: "tenant"},
		{name: "tenant breaking out of its string", cut: revoke.Cutoff{Tenant: `acme","globex`}, want: "tenant"},
		{name: "tenant policy variable", cut: revoke.Cutoff{Tenant: "${aws:username}"}, want: "tenant"},
		{name: "tenant with a space", cut: revoke.Cutoff{Tenant: "a b"}, want: "tenant"},
		{name: "tenant with a lookalike letter", cut: revoke.Cutoff{Tenant: "аcme"}, want: "tenant"},
		{name: "tenant too long", cut: revoke.Cutoff{Tenant: strings.Repeat("a", 65)}, want: "tenant"},
		{name: "tenant outside the configured pattern", mutate: func(c *revoke.Config) {
			c.TenantRule, _ = policy.NewTenantRule(`^[a-z]+$`)
		}, cut: revoke.Cutoff{Tenant: "Acme"}, want: "tenant_pattern"},
		{name: "subject starting with aws:", cut: revoke.Cutoff{Subject: "aws:root"}, want: "SourceIdentity"},
		{name: "subject of one character", cut: revoke.Cutoff{Subject: "a"}, want: "SourceIdentity"},
		{name: "subject too long", cut: revoke.Cutoff{Subject: strings.Repeat("a", 65)}, want: "SourceIdentity"},
		{name: "subject wildcard", cut: revoke.Cutoff{Subject: "orders*"}, want: "SourceIdentity"},
		{name: "subject with a quote", cut: revoke.Cutoff{Subject: `a"b`}, want: "SourceIdentity"},
		{name: "neither tenant nor subject", cut: revoke.Cutoff{}, want: "name a tenant or a subject"},
		{name: "both tenant and subject", cut: revoke.Cutoff{Tenant: "acme", Subject: "orders-api"}, want: "name a tenant or a subject"},
		{name: "cut-off in the future", cut: revoke.Cutoff{Tenant: "acme", Before: now.Add(2 * time.Minute)}, want: "in the future"},
		{name: "cut-off every session has outlived", cut: revoke.Cutoff{Tenant: "acme", Before: now.Add(-time.Hour)}, want: "has expired"},
		{name: "no policy ARN", mutate: func(c *revoke.Config) { c.PolicyARN = "" }, cut: revoke.Cutoff{Tenant: "acme"}, want: "policy ARN"},
		{name: "an AWS managed policy", mutate: func(c *revoke.Config) { c.PolicyARN = "arn:aws:iam::aws:policy/AdministratorAccess" }, cut: revoke.Cutoff{Tenant: "acme"}, want: "policy ARN"},
		{name: "no longest duration", mutate: func(c *revoke.Config) { c.LongestDuration = 0 }, cut: revoke.Cutoff{Tenant: "acme"}, want: "duration"},
		{name: "no tenant rule", mutate: func(c *revoke.Config) { c.TenantRule = nil }, cut: revoke.Cutoff{Tenant: "acme"}, want: "tenant rule"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := config(t)
			if tt.mutate != nil {
				tt.mutate(&cfg)
			}
			fake := newFakeIAM(arn, placeholder)
			_, err := revoke.Apply(context.Background(), fake, cfg, tt.cut)
			if !errors.Is(err, revoke.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrInvalid saying %q", err, tt.want)
			}
			if _, got := fake.Default(); got != placeholder || fake.creates != 0 {
				t.Errorf("the policy was written: %s", got)
			}
		})
	}
}

func TestApplyAcceptsTheEdgesOfTheCutoffWindow(t *testing.T) {
	for _, before := range []time.Time{now.Add(30 * time.Second), now.Add(-time.Hour + time.Second)} {
		fake := newFakeIAM(arn, placeholder)
		res, err := revoke.Apply(context.Background(), fake, config(t), revoke.Cutoff{Tenant: "acme", Before: before})
		if err != nil || !res.Written || !res.Before.Equal(before) {
			t.Errorf("cut-off %s: %+v, %v", before, res, err)
		}
	}
}

// Two operators revoking at once must not undo each other: a version
// another writer adds between the read and the write is merged into a
// version written after it.
func TestApplyMergesAVersionWrittenMeanwhile(t *testing.T) {
	fake := newFakeIAM(arn, placeholder)
	fake.beforeCreate = func(call int) {
		if call == 1 {
			fake.Write(doc(tenants(now, "globex")))
		}
	}
	res, err := revoke.Apply(context.Background(), fake, config(t), revoke.Cutoff{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	id, got := fake.Default()
	if want := doc(tenants(now, "acme", "globex")); got != want || res.Version != id || id != "v4" {
		t.Errorf("default %s (result %s):\n%s\nwant v4:\n%s", id, res.Version, got, want)
	}
}

func TestApplyGivesUpWhenThePolicyKeepsChanging(t *testing.T) {
	fake := newFakeIAM(arn, placeholder)
	fake.beforeCreate = func(call int) { fake.Write(doc(tenants(now, fmt.Sprintf("other%d", call)))) }
	_, err := revoke.Apply(context.Background(), fake, config(t), revoke.Cutoff{Tenant: "acme"})
	if !errors.Is(err, revoke.ErrConflict) {
		t.Fatalf("err = %v, want ErrConflict", err)
	}
}

func TestApplyWrapsIAMErrorsWithThePolicy(t *testing.T) {
	fake := newFakeIAM("arn:aws:iam::123456789012:policy/another", placeholder)
	_, err := revoke.Apply(context.Background(), fake, config(t), revoke.Cutoff{Tenant: "acme"})
	if err == nil || !strings.Contains(err.Error(), "list the versions of policy "+arn) || !strings.Contains(err.Error(), "NoSuchEntity") {
		t.Fatalf("err = %v", err)
	}
}

// When only merging what another writer added meanwhile outgrows the
// policy, the cut-off is in force and the error says the other may not be.
func TestApplyReportsAMergeThatWouldNotFit(t *testing.T) {
	fake := newFakeIAM(arn, placeholder)
	ids := make([]string, 93)
	for i := range ids {
		ids[i] = fmt.Sprintf("t%059d", i)
	}
	fake.beforeCreate = func(call int) {
		if call == 1 {
			fake.Write(doc(tenants(now.Add(-30*time.Minute), ids...)))
		}
	}
	_, err := revoke.Apply(context.Background(), fake, config(t), revoke.Cutoff{Tenant: "acme"})
	if !errors.Is(err, revoke.ErrConflict) || !errors.Is(err, revoke.ErrTooLarge) || !strings.Contains(err.Error(), "written as version v3") {
		t.Fatalf("err = %v, want ErrConflict and ErrTooLarge naming v3", err)
	}
	if id, got := fake.Default(); id != "v3" || !strings.Contains(got, `["acme"]`) {
		t.Errorf("default %s: %s, want v3 holding acme's cut-off", id, got)
	}
}
