package tenants

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// refreshTimeout bounds one read of the store made while a request waits.
const refreshTimeout = 2 * time.Second

// resyncEvery is how often Run reads the whole store again, for what was
// written there without the tenants command (no revision taken): an item
// edited or deleted by hand.
const resyncEvery = 5 * time.Minute

// Registry is the allow-list and file of known tenants; *registry.Registry
// has it, and a nil one knows every tenant.
type Registry interface {
	Allowed(id string) bool
	Attributes(id string) map[string]string
}

// Store is the tenant store; *Table has it.
type Store interface {
	// Revision is the store's latest revision.
	Revision(ctx context.Context) (int64, error)
	// Since returns every tenant written after rev (0: all).
	Since(ctx context.Context, rev int64) ([]Item, error)
	// Get reads one tenant, consistently.
	Get(ctx context.Context, id string) (Item, bool, error)
}

// Config configures a Directory.
type Config struct {
	// Registry, when set, knows tenants beside the store.
	Registry Registry
	// Store, when set, is the tenant store; it is read whole by New.
	Store Store
	// Check validates a tenant id; store items it refuses are left out.
	Check func(id string) error
	// Poll is how often Run looks for changes in the store.
	Poll   time.Duration
	Logger *slog.Logger
}

// Directory says which tenants may be vended for. It holds the tenant store
// in memory and follows its changes: by polling it (Run), by notices
// another process sends (Notice), and by the revisions a replica reads
// beside the shared cache (Observe). A suspension takes effect on the first
// of these that tells it, and is lifted only by the store itself: an error
// of the store or of Redis never lifts one. Every change of a tenant drops
// its cached credentials (OnChange). It is safe for concurrent use.
type Directory struct {
	cfg   Config
	view  atomic.Pointer[view]
	kick  chan struct{}
	reads singleflight.Group // refreshes of a tenant a request waits on

	mu       sync.Mutex // serializes changes of the view and storeRev
	storeRev int64
	onChange func(tenant string)
}

// view is the store as last read, replaced whole on every change, so that
// a request reads it without a lock.
type view struct {
	tenants map[string]entry  // by tenant id
	groups  map[string]string // Group(id) -> id
}

type entry struct {
	standing Standing
	rev      int64 // the item's revision as last read or told
	attrs    map[string]string
}

// New returns a Directory, having read the whole store when there is one.
func New(ctx context.Context, cfg Config) (*Directory, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Check == nil {
		cfg.Check = func(string) error { return nil }
	}
	if cfg.Store != nil && cfg.Poll <= 0 {
		return nil, errors.New("tenants: a store needs a positive poll interval")
	}
	d := &Directory{cfg: cfg, kick: make(chan struct{}, 1), onChange: func(string) {}}
	d.view.Store(&view{tenants: map[string]entry{}, groups: map[string]string{}})
	if cfg.Store == nil {
		return d, nil
	}
	rev, err := cfg.Store.Revision(ctx)
	if err != nil {
		return nil, err
	}
	items, err := cfg.Store.Since(ctx, 0)
	if err != nil {
		return nil, err
	}
	d.apply(items, rev)
	return d, nil
}

// OnChange sets what is done when a tenant changes (its standing or its
// revision): the service drops its cached credentials.
func (d *Directory) OnChange(f func(tenant string)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.onChange = f
}

// Standing says whether tenant may be vended for.
func (d *Directory) Standing(tenant string) Standing {
	if e, ok := d.view.Load().tenants[tenant]; ok {
		return e.standing
	}
	if d.cfg.Registry != nil && d.cfg.Registry.Allowed(tenant) {
		return Active
	}
	if d.cfg.Registry == nil && d.cfg.Store == nil {
		return Active
	}
	return Unknown
}

// Attributes are the attributes of tenant: its store item's when the
// store holds it, else the registry file's; nil when neither has any.
func (d *Directory) Attributes(tenant string) map[string]string {
	if e, ok := d.view.Load().tenants[tenant]; ok {
		return e.attrs
	}
	if d.cfg.Registry != nil {
		return d.cfg.Registry.Attributes(tenant)
	}
	return nil
}

// Revision is the store revision known of a tenant group, 0 for a group
// the store does not hold.
func (d *Directory) Revision(group string) int64 {
	v := d.view.Load()
	return v.tenants[v.groups[group]].rev
}

// Len is the number of tenants the store holds.
func (d *Directory) Len() int { return len(d.view.Load().tenants) }

// Run polls the store every Config.Poll until ctx ends: the store's
// revision first, then, when it moved, the tenants written since; and it
// reads again the tenants a change left unsettled.
func (d *Directory) Run(ctx context.Context) {
	if d.cfg.Store == nil {
		return
	}
	t := time.NewTicker(d.cfg.Poll)
	defer t.Stop()
	resync := time.NewTicker(resyncEvery)
	defer resync.Stop()
	failing := false
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			err = d.poll(ctx)
		case <-d.kick:
			err = d.poll(ctx)
		case <-resync.C:
			err = d.Resync(ctx)
		}
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			failing = true
			d.cfg.Logger.Error("tenant store unreadable; keeping what is known (suspensions stay in force)", "err", err)
		case err == nil && failing:
			failing = false
			d.cfg.Logger.Info("tenant store readable again")
		}
	}
}

// Resync reads the whole store again and takes it as it is: tenants it no
// longer holds are forgotten.
func (d *Directory) Resync(ctx context.Context) error {
	rev, err := d.cfg.Store.Revision(ctx)
	if err != nil {
		return err
	}
	items, err := d.cfg.Store.Since(ctx, 0)
	if err != nil {
		return err
	}
	held := map[string]bool{}
	for _, it := range items {
		held[it.TenantID] = true
	}
	for id := range d.view.Load().tenants {
		if !held[id] {
			d.remove(id)
		}
	}
	d.apply(items, rev)
	return nil
}

// Poll looks once for changes in the store, as Run does.
func (d *Directory) Poll(ctx context.Context) error { return d.poll(ctx) }

func (d *Directory) poll(ctx context.Context) error {
	rev, err := d.cfg.Store.Revision(ctx)
	if err != nil {
		return err
	}
	d.mu.Lock()
	since := d.storeRev
	d.mu.Unlock()
	if rev > since {
		items, err := d.cfg.Store.Since(ctx, since)
		if err != nil {
			return err
		}
		d.apply(items, rev)
	}
	var errs []error
	for id, e := range d.view.Load().tenants {
		if e.standing == Unsettled {
			errs = append(errs, d.refresh(ctx, id, e.rev))
		}
	}
	return errors.Join(errs...)
}

// Observe is told a tenant group's revision as the shared tier read it. A
// revision beyond the one known means the tenant changed: it is read from
// the store before the request that saw it goes on, and stays unsettled
// (refused for the moment) while the store cannot be read.
func (d *Directory) Observe(group string, rev int64) {
	v := d.view.Load()
	id, ok := v.groups[group]
	if !ok || rev <= v.tenants[id].rev {
		return
	}
	// Many misses of one tenant at once read the store once.
	_, err, _ := d.reads.Do(id, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), refreshTimeout)
		defer cancel()
		return nil, d.refresh(ctx, id, rev)
	})
	if err != nil {
		d.cfg.Logger.Warn("tenant changed and the store cannot say how; refusing it until it can", "tenant", id, "err", err)
	}
}

// Notice is told of a change another process made: a suspension takes
// effect at once; anything else is read from the store first, in the
// background.
func (d *Directory) Notice(group string, rev int64, suspended bool) {
	v := d.view.Load()
	id, ok := v.groups[group]
	if !ok {
		d.Kick() // a tenant this replica does not hold yet: poll now
		return
	}
	if rev <= v.tenants[id].rev {
		return
	}
	if suspended {
		d.set(id, func(e *entry) bool {
			if rev <= e.rev { // a poll got there first
				return false
			}
			e.standing, e.rev = Suspended, rev
			return true
		})
		return
	}
	// Lifted only once the store says so; read apart from the notices, so
	// that the subscription is not held up by the store.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), refreshTimeout)
		defer cancel()
		if err := d.refresh(ctx, id, rev); err != nil {
			d.cfg.Logger.Warn("tenant changed and the store cannot say how; refusing it until it can", "tenant", id, "err", err)
			d.Kick()
		}
	}()
}

// Kick asks Run to poll now, as when notices may have been missed.
func (d *Directory) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// refresh reads tenant id from the store, which must hold revision rev of
// it or later; until it does, the tenant is unsettled (a suspended one
// stays suspended).
func (d *Directory) refresh(ctx context.Context, id string, rev int64) error {
	it, ok, err := d.cfg.Store.Get(ctx, id)
	if err == nil && ok && it.Revision < rev {
		// Behind what it was told. Either the write has not reached this
		// read, or the revision told was never a write of this tenant in
		// this store (a table restored, an item edited by hand, another
		// table behind the same Redis): once the store itself is past it,
		// the item is what it is, at the told revision, which then no
		// longer reads as news.
		var at int64
		if at, err = d.cfg.Store.Revision(ctx); err == nil && at < rev {
			err = fmt.Errorf("tenant store: tenant %s at revision %d, told %d, the store at %d", id, it.Revision, rev, at)
		}
		it.Revision = rev
	}
	if err != nil {
		d.set(id, func(e *entry) bool {
			if e.standing != Suspended {
				e.standing = Unsettled
			}
			e.rev = max(e.rev, rev)
			return true
		})
		return err
	}
	if !ok {
		d.remove(id)
		return nil
	}
	d.apply([]Item{it}, 0)
	return nil
}

// apply takes items read from the store into the view, and the store's
// revision when rev is not 0.
func (d *Directory) apply(items []Item, rev int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.view.Load()
	next := &view{tenants: maps.Clone(v.tenants), groups: maps.Clone(v.groups)}
	var changed []string
	for _, it := range items {
		if err := d.cfg.Check(it.TenantID); err != nil {
			d.cfg.Logger.Warn("tenant store item refused", "err", err)
			continue
		}
		old, held := next.tenants[it.TenantID]
		if held && it.Revision < old.rev {
			continue // older than what a notice already told
		}
		e := entry{standing: Active, rev: it.Revision, attrs: it.Attributes}
		if it.Status != StatusActive {
			if it.Status != StatusSuspended {
				d.cfg.Logger.Warn("tenant store item with an unknown status; taken as suspended", "tenant", it.TenantID, "status", it.Status)
			}
			e.standing = Suspended
		}
		if held && (old.standing != e.standing || old.rev != e.rev) {
			changed = append(changed, it.TenantID)
		}
		next.tenants[it.TenantID] = e
		next.groups[Group(it.TenantID)] = it.TenantID
	}
	if rev > d.storeRev {
		d.storeRev = rev
	}
	d.view.Store(next)
	for _, id := range changed {
		d.onChange(id)
	}
}

// set changes one tenant's entry, when f says it changed it, and drops its
// cached credentials then.
func (d *Directory) set(id string, f func(*entry) bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.view.Load()
	e := v.tenants[id]
	if !f(&e) {
		return
	}
	next := &view{tenants: maps.Clone(v.tenants), groups: v.groups}
	next.tenants[id] = e
	d.view.Store(next)
	d.onChange(id)
}

// remove forgets a tenant the store no longer holds.
func (d *Directory) remove(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.view.Load()
	next := &view{tenants: maps.Clone(v.tenants), groups: maps.Clone(v.groups)}
	delete(next.tenants, id)
	delete(next.groups, Group(id))
	d.view.Store(next)
	d.onChange(id)
}
