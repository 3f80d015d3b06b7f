package tenants_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/tokenvendor/tokenvendor/internal/tenants"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

// moto is moto_server's DynamoDB, started once for the package.
var moto string

func TestMain(m *testing.M) {
	url, stop, err := testsupport.StartMoto()
	if err != nil {
		println("tenants: cannot start moto_server:", err.Error())
		os.Exit(1)
	}
	moto = url
	code := m.Run()
	stop()
	os.Exit(code)
}

// newTable creates a tenant table of its own in moto.
func newTable(t *testing.T) *tenants.Table {
	t.Helper()
	return tenants.NewTable(newDB(t))
}

// newDB creates a tenant table of its own in moto and returns a client and
// the table's name.
func newDB(t *testing.T) (*dynamodb.Client, string) {
	t.Helper()
	name := "tenants-" + t.Name()
	db, err := testsupport.CreateTenantTable(moto, name)
	if err != nil {
		t.Fatal(err)
	}
	return db, name
}

func TestTableWritesTakeOneRevisionEachAndReadBack(t *testing.T) {
	ctx := context.Background()
	table := newTable(t)
	if rev, err := table.Revision(ctx); err != nil || rev != 0 {
		t.Fatalf("Revision of an empty store = %d, %v; want 0", rev, err)
	}
	r1, err := table.Create(ctx, "acme", map[string]string{"account_id": "111122223333"})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := table.Create(ctx, "globex", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := table.Create(ctx, "acme", nil); !errors.Is(err, tenants.ErrTenantExists) {
		t.Fatalf("Create of a tenant held: %v, want ErrTenantExists", err)
	}
	r3, err := table.SetStatus(ctx, "acme", tenants.StatusSuspended)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := table.SetStatus(ctx, "umbrella", tenants.StatusSuspended); !errors.Is(err, tenants.ErrNoSuchTenant) {
		t.Fatalf("SetStatus of a tenant not held: %v, want ErrNoSuchTenant", err)
	}
	if r1 != 1 || r2 != 2 || r3 != 3 {
		t.Fatalf("revisions %d %d %d, want 1 2 3: a failed write took one, or two writes shared one", r1, r2, r3)
	}
	it, ok, err := table.Get(ctx, "acme")
	if err != nil || !ok || it.Status != tenants.StatusSuspended || it.Revision != 3 || it.Attributes["account_id"] != "111122223333" {
		t.Fatalf("Get(acme) = %+v %v %v", it, ok, err)
	}
	since, err := table.Since(ctx, 2)
	if err != nil || len(since) != 1 || since[0].TenantID != "acme" {
		t.Fatalf("Since(2) = %+v, %v; want acme alone", since, err)
	}
	all, err := table.Since(ctx, 0)
	if err != nil || len(all) != 2 {
		t.Fatalf("Since(0) = %+v, %v; want both tenants and not the revision item", all, err)
	}
}

// racing is the store's DynamoDB with another writer that gets in first,
// once, between the store's read of the revision and its write.
type racing struct {
	tenants.DynamoDB
	once  sync.Once
	first func()
}

func (r *racing) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	r.once.Do(r.first)
	return r.DynamoDB.TransactWriteItems(ctx, in, optFns...)
}

func TestAWriteOvertakenByAnotherTakesTheNextRevision(t *testing.T) {
	ctx := context.Background()
	db, name := newDB(t)
	other := tenants.NewTable(db, name)
	var intruder int64
	table := tenants.NewTable(&racing{DynamoDB: db, first: func() {
		var err error
		if intruder, err = other.Create(ctx, "intruder", nil); err != nil {
			t.Error(err)
		}
	}}, name)
	rev, err := table.Create(ctx, "acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	if intruder != 1 || rev != 2 {
		t.Fatalf("revisions: the other writer %d, this one %d; want 1 and 2", intruder, rev)
	}
	if it, _, _ := table.Get(ctx, "acme"); it.Revision != 2 {
		t.Fatalf("acme's item holds revision %d, want 2", it.Revision)
	}
}
