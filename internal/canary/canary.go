// Package canary keeps proving, in production, that one tenant's
// credentials cannot reach another tenant's data. For two tenants kept for
// it, it vends each one's credentials through the same path as a caller,
// reads the tenant's own object or item with them (which must not be
// denied, or the probe proves nothing), then the other tenant's: only
// AccessDenied there is isolation. A read that succeeds, or that finds
// nothing, is a breach: the credentials reached the other tenant's space.
// Anything else (throttling, a timeout, a missing table) is an error, not a
// verdict.
package canary

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/policy"
	"github.com/tokenvendor/tokenvendor/internal/vend"
)

// Subject is the caller the canary vends as: a session.name_template with
// {{ .Subject }} shows it in CloudTrail, and per-caller limits count it.
const Subject = "tokenvendor-canary"

// Verdict is the outcome of a probe in one direction, or of a run.
type Verdict string

// Verdicts, worst last.
const (
	Isolated Verdict = "isolated"
	Error    Verdict = "error"
	Breach   Verdict = "breach"
)

// rank orders the verdicts, worst last.
var rank = map[Verdict]int{Isolated: 0, Error: 1, Breach: 2}

func worse(a, b Verdict) Verdict {
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// Answer is how a read was answered.
type Answer int

// Answers of a read. The zero value is Failed, so that a reader that says
// nothing is no verdict.
const (
	Failed   Answer = iota // anything else: throttled, timed out, no such table
	Found                  // the object or item is there and readable
	NotFound               // the read was allowed and found nothing
	Denied                 // AccessDenied
)

// Vendor vends credentials; *vend.Service has it.
type Vendor interface {
	Vend(ctx context.Context, caller auth.Caller, req vend.Request) (vend.Grant, error)
}

// Reader reads one object or item with the given credentials and says how
// it was answered; err explains a Failed answer. The AWS reader is
// NewAWSReader. Its read must need exactly the permission the profile's
// confinement is about, and nothing more that could deny it for another
// reason (a KMS key's, say).
type Reader interface {
	Read(ctx context.Context, creds aws.Credentials, target Target) (Answer, error)
}

// Target is one tenant's object (Bucket, Key) or item (Table, Item).
type Target struct {
	Bucket, Key string
	Table       string
	Item        map[string]string
}

// String names the operation and the object or item, for logs.
func (t Target) String() string {
	if t.Table != "" {
		return fmt.Sprintf("dynamodb:GetItem %s %v", t.Table, t.Item)
	}
	return fmt.Sprintf("s3:GetObject %s/%s", t.Bucket, t.Key)
}

// Probe is what to read with one profile's credentials: an S3 object or a
// DynamoDB item per tenant, named by key templates.
type Probe struct {
	Profile string
	Bucket  string
	Key     *policy.Key
	Table   string
	Item    map[string]*policy.Key
}

func (p Probe) target(tenant string) (Target, error) {
	if p.Table != "" {
		item := map[string]string{}
		for name, k := range p.Item {
			v, err := k.Render(tenant)
			if err != nil {
				return Target{}, err
			}
			item[name] = v
		}
		return Target{Table: p.Table, Item: item}, nil
	}
	key, err := p.Key.Render(tenant)
	return Target{Bucket: p.Bucket, Key: key}, err
}

// Config configures a Canary.
type Config struct {
	Tenants [2]string
	Probes  []Probe
	Vendor  Vendor
	Reader  Reader
	// Timeout bounds one probe: the vending and both reads. Default 30 s.
	Timeout    time.Duration
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Canary runs the probes. It is safe for concurrent use.
type Canary struct {
	cfg      Config
	isolated *prometheus.GaugeVec
	runs     *prometheus.CounterVec
}

// New returns a Canary.
func New(cfg Config) (*Canary, error) {
	if cfg.Vendor == nil || cfg.Reader == nil {
		return nil, errors.New("canary: no vendor or reader")
	}
	if cfg.Tenants[0] == "" || cfg.Tenants[0] == cfg.Tenants[1] {
		return nil, errors.New("canary: two different tenants")
	}
	if len(cfg.Probes) == 0 {
		return nil, errors.New("canary: no probes")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	f := promauto.With(cfg.Registerer)
	c := &Canary{
		cfg: cfg,
		isolated: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tokenvendor_isolation_canary",
			Help: "1 when the last canary run of the profile found both tenants isolated, 0 otherwise.",
		}, []string{"profile"}),
		runs: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenvendor_isolation_canary_runs_total",
			Help: "Canary runs by profile and result (isolated, breach, error).",
		}, []string{"profile", "result"}),
	}
	// The runs' series exist from the start, at 0, so that "no run for a
	// while" is visible; the gauge waits for the first run.
	for _, p := range cfg.Probes {
		for _, v := range []Verdict{Isolated, Error, Breach} {
			c.runs.WithLabelValues(p.Profile, string(v))
		}
	}
	return c, nil
}

// Result is one probe in one direction: the credentials of From reading
// To's object or item.
type Result struct {
	Profile  string
	From, To string
	Verdict  Verdict
	Why      string
}

// Run runs every probe in both directions once, records the metrics (a
// profile's verdict is the worst of its probes') and logs every verdict but
// isolated. Never a credential in a log line. A run cut short by ctx
// records nothing.
func (c *Canary) Run(ctx context.Context) []Result {
	var results []Result
	verdicts := map[string]Verdict{}
	var profiles []string
	for _, p := range c.cfg.Probes {
		if _, seen := verdicts[p.Profile]; !seen {
			verdicts[p.Profile] = Isolated
			profiles = append(profiles, p.Profile)
		}
		for _, r := range c.probe(ctx, p) {
			results = append(results, r)
			verdicts[p.Profile] = worse(verdicts[p.Profile], r.Verdict)
			switch r.Verdict {
			case Breach:
				c.cfg.Logger.Error("isolation canary: BREACH: one tenant's credentials reached another tenant's data",
					"profile", r.Profile, "from", r.From, "to", r.To, "why", r.Why)
			case Error:
				c.cfg.Logger.Warn("isolation canary: probe failed; no verdict",
					"profile", r.Profile, "from", r.From, "to", r.To, "why", r.Why)
			}
		}
	}
	if ctx.Err() != nil {
		return results
	}
	for _, profile := range profiles {
		v := 0.0
		if verdicts[profile] == Isolated {
			v = 1
		}
		c.isolated.WithLabelValues(profile).Set(v)
		c.runs.WithLabelValues(profile, string(verdicts[profile])).Inc()
	}
	return results
}

// side is one canary tenant of a probe: its credentials, its own object or
// item, and how reading that with its credentials was answered.
type side struct {
	tenant string
	creds  aws.Credentials
	target Target
	own    Answer
	why    string // when own is not Found
}

// probe reads each tenant's own object or item with its credentials, then,
// in both directions, the other's. A direction is judged only when the
// reader can reach its own and the other tenant's is there: a denied read of
// a missing object proves nothing.
func (c *Canary) probe(ctx context.Context, p Probe) []Result {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var sides [2]side
	for i, tenant := range c.cfg.Tenants {
		s := &sides[i]
		s.tenant = tenant
		target, err := p.target(tenant)
		if err != nil {
			s.own, s.why = Failed, err.Error()
			continue
		}
		s.target = target
		g, err := c.cfg.Vendor.Vend(ctx, auth.Caller{Subject: Subject, TenantID: tenant}, vend.Request{Profile: p.Profile, TenantID: tenant})
		if err != nil {
			s.own, s.why = Failed, fmt.Sprintf("vend %s's credentials: %v", tenant, err)
			continue
		}
		s.creds = aws.Credentials{AccessKeyID: g.AccessKeyID, SecretAccessKey: g.SecretAccessKey, SessionToken: g.SessionToken,
			CanExpire: true, Expires: g.Expiration}
		answer, err := c.cfg.Reader.Read(ctx, s.creds, target)
		s.own = answer
		switch answer {
		case Denied:
			s.why = fmt.Sprintf("%s denied its own %s: the probe cannot tell isolation from a profile that reaches nothing", tenant, target)
		case NotFound:
			s.why = fmt.Sprintf("%s's own %s is missing: create it (docs/isolation.md: Isolation canary)", tenant, target)
		case Failed:
			s.why = fmt.Sprintf("%s reading its own %s: %v", tenant, target, err)
		}
	}
	var results []Result
	for _, dir := range [][2]int{{0, 1}, {1, 0}} {
		from, to := sides[dir[0]], sides[dir[1]]
		r := Result{Profile: p.Profile, From: from.tenant, To: to.tenant, Verdict: Error}
		switch {
		case from.own != Found:
			r.Why = from.why
		case to.own != Found:
			r.Why = to.why
		default:
			r.Verdict, r.Why = Judge(c.cfg.Reader.Read(ctx, from.creds, to.target))
			r.Why = fmt.Sprintf("%s reading %s's %s: %s", from.tenant, to.tenant, to.target, r.Why)
		}
		results = append(results, r)
	}
	return results
}

// Judge turns the answer to a read of another tenant's object or item into
// a verdict: only AccessDenied is isolation.
func Judge(answer Answer, err error) (Verdict, string) {
	switch answer {
	case Denied:
		return Isolated, "AccessDenied"
	case Found:
		return Breach, "read succeeded"
	case NotFound:
		return Breach, "allowed to look, found nothing: the credentials reach the other tenant's space"
	default:
		return Error, fmt.Sprintf("no verdict: %v", err)
	}
}

// Loop runs the canary once ready says the service is ready, then every
// interval, until ctx ends. It runs in the background, never on a caller's
// request.
func (c *Canary) Loop(ctx context.Context, interval time.Duration, ready func() bool) {
	for !ready() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		c.Run(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
