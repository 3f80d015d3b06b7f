package tenants_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/tenants"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

// store is a tenant store in memory; with err set every read fails.
type store struct {
	mu    sync.Mutex
	rev   int64
	items map[string]tenants.Item
	err   error
	gets  int
}

func newStore(items ...tenants.Item) *store {
	s := &store{items: map[string]tenants.Item{}}
	for _, it := range items {
		s.rev++
		it.Revision = s.rev
		s.items[it.TenantID] = it
	}
	return s
}

// set writes a tenant's status at the next revision, as the tenants
// command does, and returns that revision.
func (s *store) set(id, status string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	s.items[id] = tenants.Item{TenantID: id, Status: status, Revision: s.rev}
	return s.rev
}

func (s *store) fail(err error) { s.mu.Lock(); defer s.mu.Unlock(); s.err = err }

func (s *store) Revision(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev, s.err
}

func (s *store) Since(_ context.Context, rev int64) ([]tenants.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	var out []tenants.Item
	for _, it := range s.items {
		if it.Revision > rev {
			out = append(out, it)
		}
	}
	return out, nil
}

func (s *store) Get(_ context.Context, id string) (tenants.Item, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gets++
	if s.err != nil {
		return tenants.Item{}, false, s.err
	}
	it, ok := s.items[id]
	return it, ok, nil
}

// allow is a registry of a fixed list.
type allow []string

func (a allow) Allowed(id string) bool { return slices.Contains(a, id) }

func (a allow) Attributes(string) map[string]string { return nil }

func newDirectory(t *testing.T, cfg tenants.Config) (*tenants.Directory, *[]string) {
	t.Helper()
	cfg.Poll = time.Hour // polled by hand
	d, err := tenants.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var changed []string
	var mu sync.Mutex
	d.OnChange(func(id string) { mu.Lock(); defer mu.Unlock(); changed = append(changed, id) })
	return d, &changed
}

func active(id string) tenants.Item { return tenants.Item{TenantID: id, Status: tenants.StatusActive} }

var errDown = errors.New("store unreachable")

func TestStandingFromTheRegistryAndTheStore(t *testing.T) {
	s := newStore(active("acme"), tenants.Item{TenantID: "globex", Status: tenants.StatusSuspended},
		tenants.Item{TenantID: "odd", Status: "paused"}, active("bad id"))
	d, _ := newDirectory(t, tenants.Config{Registry: allow{"initech", "globex"}, Store: s,
		Check: func(id string) error {
			if id == "bad id" {
				return errors.New("invalid")
			}
			return nil
		}})
	for id, want := range map[string]tenants.Standing{
		"acme":     tenants.Active,
		"globex":   tenants.Suspended, // the store's suspension holds over the registry
		"initech":  tenants.Active,    // the registry alone
		"odd":      tenants.Suspended, // an unknown status is taken as suspended
		"bad id":   tenants.Unknown,   // refused by the tenant rule
		"umbrella": tenants.Unknown,
	} {
		if got := d.Standing(id); got != want {
			t.Errorf("Standing(%s) = %s, want %s", id, got, want)
		}
	}
}

func TestPollAppliesChangesAndDropsCredentialsOfChangedTenants(t *testing.T) {
	s := newStore(active("acme"), active("globex"))
	d, changed := newDirectory(t, tenants.Config{Store: s})
	s.set("acme", tenants.StatusSuspended)
	s.set("initech", tenants.StatusActive)
	if err := d.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d.Standing("acme") != tenants.Suspended || d.Standing("initech") != tenants.Active || d.Standing("globex") != tenants.Active {
		t.Fatalf("after the poll: acme %s, initech %s, globex %s", d.Standing("acme"), d.Standing("initech"), d.Standing("globex"))
	}
	if !slices.Equal(*changed, []string{"acme"}) {
		t.Fatalf("changed %v, want acme alone (a new tenant holds no credentials)", *changed)
	}
}

func TestASuspensionNoticeTakesEffectAtOnceAndNothingButTheStoreLiftsIt(t *testing.T) {
	s := newStore(active("acme"))
	d, changed := newDirectory(t, tenants.Config{Store: s})
	rev := s.set("acme", tenants.StatusSuspended)
	s.fail(errDown) // the notice alone must do
	d.Notice(tenants.Group("acme"), rev, true)
	if d.Standing("acme") != tenants.Suspended || len(*changed) != 1 {
		t.Fatalf("after a suspension notice: %s, changed %v", d.Standing("acme"), *changed)
	}
	// A resumption the store cannot confirm, by notice, by revision, by
	// poll: the suspension holds.
	s.fail(nil)
	rev = s.set("acme", tenants.StatusActive)
	s.fail(errDown)
	d.Notice(tenants.Group("acme"), rev, false)
	d.Observe(tenants.Group("acme"), rev)
	if err := d.Poll(context.Background()); err == nil {
		t.Fatal("a poll of an unreachable store succeeded")
	}
	if got := d.Standing("acme"); got != tenants.Suspended {
		t.Fatalf("a store error lifted the suspension: %s", got)
	}
	s.fail(nil)
	if err := d.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := d.Standing("acme"); got != tenants.Active {
		t.Fatalf("the store's resumption was not applied: %s", got)
	}
}

func TestARevisionBeyondTheKnownOneIsReadFromTheStoreBeforeTheRequestGoesOn(t *testing.T) {
	s := newStore(active("acme"), active("globex"))
	d, changed := newDirectory(t, tenants.Config{Store: s})
	rev := s.set("acme", tenants.StatusSuspended)
	d.Observe(tenants.Group("acme"), rev)
	if d.Standing("acme") != tenants.Suspended || !slices.Equal(*changed, []string{"acme"}) {
		t.Fatalf("after a newer revision: %s, changed %v", d.Standing("acme"), *changed)
	}
	gets := s.gets
	d.Observe(tenants.Group("acme"), rev) // known now: no read
	d.Observe(tenants.Group("unknown"), 99)
	if s.gets != gets {
		t.Fatalf("%d store reads for revisions already known", s.gets-gets)
	}
	// A change the store cannot say: refused for the moment, not served
	// on what may be a lifted suspension or a new suspension.
	rev = s.set("globex", tenants.StatusSuspended)
	s.fail(errDown)
	d.Observe(tenants.Group("globex"), rev)
	if got := d.Standing("globex"); got != tenants.Unsettled {
		t.Fatalf("a change the store cannot confirm: %s, want unsettled", got)
	}
	s.fail(nil)
	if err := d.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := d.Standing("globex"); got != tenants.Suspended {
		t.Fatalf("after the store answered: %s, want suspended", got)
	}
}

func TestANoticeForATenantNotHeldPollsAtOnce(t *testing.T) {
	s := newStore(active("acme"))
	d, _ := newDirectory(t, tenants.Config{Store: s, Poll: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	rev := s.set("initech", tenants.StatusActive)
	d.Notice(tenants.Group("initech"), rev, false)
	testsupport.Eventually(t, 5*time.Second, func() error {
		if d.Standing("initech") != tenants.Active {
			return errors.New("a tenant announced but not held was not read (Run should poll at once)")
		}
		return nil
	})
}

func TestResyncTakesWhatWasWrittenByHand(t *testing.T) {
	s := newStore(active("acme"), active("globex"))
	d, changed := newDirectory(t, tenants.Config{Store: s})
	// Edited and deleted in the table itself: no revision taken, so no
	// poll sees it.
	s.mu.Lock()
	s.items["acme"] = tenants.Item{TenantID: "acme", Status: tenants.StatusSuspended, Revision: 1}
	delete(s.items, "globex")
	s.mu.Unlock()
	if err := d.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d.Standing("acme") != tenants.Active {
		t.Fatal("a poll saw a change that took no revision")
	}
	if err := d.Resync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d.Standing("acme") != tenants.Suspended || d.Standing("globex") != tenants.Unknown {
		t.Fatalf("after a resync: acme %s, globex %s; want suspended and unknown", d.Standing("acme"), d.Standing("globex"))
	}
	slices.Sort(*changed)
	if !slices.Equal(*changed, []string{"acme", "globex"}) {
		t.Fatalf("changed %v, want both", *changed)
	}
}

func TestARevisionNeverWrittenForTheTenantInThisStoreSettlesOnTheStore(t *testing.T) {
	s := newStore(active("acme"), active("globex"))
	d, _ := newDirectory(t, tenants.Config{Store: s})
	// Redis tells of revision 2 for acme, which is globex's write: a
	// restored table, or another store behind the same Redis.
	d.Observe(tenants.Group("acme"), 2)
	if got := d.Standing("acme"); got != tenants.Active {
		t.Fatalf("acme after a revision the store is past but acme never took: %s, want active (as the store says)", got)
	}
	gets := s.gets
	d.Observe(tenants.Group("acme"), 2)
	if s.gets != gets {
		t.Fatal("the settled revision still reads as news")
	}
	// A revision beyond the store's own is news the store cannot confirm.
	d.Observe(tenants.Group("acme"), 9)
	if got := d.Standing("acme"); got != tenants.Unsettled {
		t.Fatalf("acme told of a revision beyond the store: %s, want unsettled", got)
	}
}

func TestASuspensionNoticeOlderThanWhatAPollAppliedChangesNothing(t *testing.T) {
	s := newStore(active("acme"))
	d, changed := newDirectory(t, tenants.Config{Store: s})
	suspended := s.set("acme", tenants.StatusSuspended)
	resumed := s.set("acme", tenants.StatusActive)
	if err := d.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	*changed = nil
	d.Notice(tenants.Group("acme"), suspended, true) // late: the poll already saw the resumption
	if got := d.Standing("acme"); got != tenants.Active || len(*changed) != 0 {
		t.Fatalf("a notice of revision %d after the poll applied %d: %s, changed %v; want active, nothing changed", suspended, resumed, got, *changed)
	}
}
