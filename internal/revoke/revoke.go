// Package revoke cuts off credentials already handed out. It keeps one
// customer-managed IAM policy, attached to the access role, whose Deny
// statements deny every action to sessions of a tenant (by the TenantID
// session tag) or of a caller (by SourceIdentity) issued before a cut-off.
// Tenants or callers sharing a cut-off share a statement; a cut-off older
// than the longest session is dropped, as every session it could deny has
// expired. The document keeps to IAM's limits on a managed policy (6,144
// characters, 5 versions) or nothing is written.
//
// Tenant ids and source identities are checked before they reach the
// document, and go into it as JSON values, never spliced as text.
package revoke

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/iam/types"
)

// Errors Apply wraps.
var (
	// ErrInvalid reports a cut-off or a Config that cannot be written: a
	// tenant id outside the tenant rule, a subject that is no
	// SourceIdentity, a cut-off in the future or long past.
	ErrInvalid = errors.New("invalid revocation")
	// ErrTooLarge reports a revocation policy that would not fit IAM's
	// MaxCharacters; nothing was written.
	ErrTooLarge = errors.New("revocation policy full")
	// ErrConflict reports a policy that other writers kept changing while
	// Apply wrote it; run again.
	ErrConflict = errors.New("revocation policy changed while writing")
)

// errNoDocument reports a version IAM returned without its document.
var errNoDocument = errors.New("IAM returned the policy version without its document")

// IAM is what Apply needs of IAM; *iam.Client has it.
type IAM interface {
	ListPolicyVersions(ctx context.Context, in *iam.ListPolicyVersionsInput, opts ...func(*iam.Options)) (*iam.ListPolicyVersionsOutput, error)
	GetPolicyVersion(ctx context.Context, in *iam.GetPolicyVersionInput, opts ...func(*iam.Options)) (*iam.GetPolicyVersionOutput, error)
	CreatePolicyVersion(ctx context.Context, in *iam.CreatePolicyVersionInput, opts ...func(*iam.Options)) (*iam.CreatePolicyVersionOutput, error)
	DeletePolicyVersion(ctx context.Context, in *iam.DeletePolicyVersionInput, opts ...func(*iam.Options)) (*iam.DeletePolicyVersionOutput, error)
}

// TenantRule checks tenant ids; *policy.TenantRule (the config's
// TenantRule) is one.
type TenantRule interface {
	Check(id string) error
}

// Config is what Apply needs besides IAM and the cut-off.
type Config struct {
	// PolicyARN is the revocation policy (revocation.policy_arn).
	PolicyARN string
	// LongestDuration is the longest session any profile vends: a cut-off
	// older than it is dropped.
	LongestDuration time.Duration
	// TenantRule checks tenant ids before they reach the document.
	TenantRule TenantRule
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Cutoff is what to cut off: the sessions of Tenant, or those of the
// caller whose SourceIdentity is Subject (one of the two), issued before
// Before.
type Cutoff struct {
	Tenant  string
	Subject string
	// Before is rounded up to a whole second; zero means now.
	Before time.Time
}

// Result is what Apply wrote.
type Result struct {
	// Version is the policy's default version now: the one written, or
	// the one in force when nothing needed writing.
	Version string
	// Written is false when the policy already cut off these sessions.
	Written bool
	// Before is the cut-off in force for the tenant or subject: the one
	// asked for, or a later one the policy already held.
	Before time.Time
	// Statements is how many cut-off statements the policy holds, and
	// Characters how many of MaxCharacters it takes.
	Statements, Characters int
	// Dropped is how many cut-offs were dropped as expired.
	Dropped int
	// Deleted is the version deleted to stay within MaxVersions, if any.
	Deleted string
	// Foreign are statements of the policy that tokenvendor did not write,
	// kept as they are.
	Foreign int
}

// futureSkew is how far ahead of the clock a cut-off may be: an
// operator's clock may run behind IAM's a little. Further ahead, it would
// also deny sessions not issued yet, which is what suspending a tenant is
// for.
const futureSkew = time.Minute

// attempts bounds how often Apply writes again after another writer
// changed the policy in between.
const attempts = 5

var (
	policyARNPattern = regexp.MustCompile(`^arn:aws[a-z-]*:iam::\d{12}:policy/[\w+=,.@/-]{1,512}$`)
	// sourceIdentityPattern is STS's rule for SourceIdentity.
	sourceIdentityPattern = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
)

// CheckSubject returns nil when s can be a session's SourceIdentity: 2 to
// 64 characters of [\w+=,.@-], not starting with aws:.
func CheckSubject(s string) error {
	if !sourceIdentityPattern.MatchString(s) || strings.HasPrefix(strings.ToLower(s), "aws:") {
		return fmt.Errorf("%w: subject: not a SourceIdentity (2 to 64 characters of [A-Za-z0-9_+=,.@-], not starting with aws:)", ErrInvalid)
	}
	return nil
}

// Apply adds the cut-off c to the revocation policy as its new default
// version, dropping expired cut-offs and, when IAM holds MaxVersions
// versions, deleting the oldest version that is not the default. It
// writes nothing when the policy already cuts off these sessions, and
// nothing when the result would not fit (ErrTooLarge). When another writer
// adds a version while Apply writes, Apply merges that version's cut-offs
// and writes again, so that concurrent revocations do not undo each other.
func Apply(ctx context.Context, client IAM, cfg Config, c Cutoff) (Result, error) {
	if err := cfg.check(); err != nil {
		return Result{}, err
	}
	now := cfg.Now().UTC()
	key, value, err := cfg.target(c)
	if err != nil {
		return Result{}, err
	}
	before, err := cutoffTime(c.Before, now, cfg.LongestDuration)
	if err != nil {
		return Result{}, err
	}

	w := writer{iam: client, arn: cfg.PolicyARN}
	var (
		pending []string // versions written by others since the one read
		wrote   bool     // a version was written by an earlier attempt
	)
	for range attempts {
		versions, base, current, doc, err := w.read(ctx, pending)
		if err != nil {
			return Result{}, err
		}
		doc.add(key, value, before)
		doc.expire(now, cfg.LongestDuration)
		text, statements, err := doc.render()
		if err != nil {
			return Result{}, fmt.Errorf("revoke: policy %s: %w", cfg.PolicyARN, err)
		}
		res := Result{
			Version: base.id, Written: wrote, Before: doc.cutoffs[key][value], Statements: statements,
			Characters: characters(text), Dropped: doc.expired, Foreign: len(doc.foreign),
		}
		if res.Characters > MaxCharacters {
			if wrote {
				// Only merging what another writer added meanwhile outgrew
				// the policy: this cut-off is in force, theirs may not be.
				return Result{}, fmt.Errorf("%w: %w: the cut-off was written as version %s, but merging the version another revoke wrote meanwhile would take %d of %d characters: its cut-off may not be in force; run it again",
					ErrConflict, ErrTooLarge, base.id, res.Characters, MaxCharacters)
			}
			return Result{}, tooLarge(res, doc, cfg.LongestDuration)
		}
		if sameDocument(text, current) {
			return res, nil
		}
		if len(versions) >= MaxVersions {
			oldest, ok := oldestNonDefault(versions)
			if !ok {
				return Result{}, fmt.Errorf("revoke: policy %s has %d versions and none to delete", cfg.PolicyARN, len(versions))
			}
			if err := w.delete(ctx, oldest.id); err != nil {
				return Result{}, err
			}
			res.Deleted = oldest.id
		}
		created, err := w.create(ctx, text)
		var limit *types.LimitExceededException
		if errors.As(err, &limit) {
			// Another writer added a version since they were listed.
			continue
		}
		if err != nil {
			return Result{}, err
		}
		res.Version, res.Written, wrote = created, true, true
		after, err := w.versions(ctx)
		if err != nil {
			return Result{}, err
		}
		pending = writtenMeanwhile(versions, after, created)
		if len(pending) == 0 {
			return res, nil
		}
	}
	return Result{}, fmt.Errorf("%w: policy %s: another revoke kept adding versions: run again", ErrConflict, cfg.PolicyARN)
}

// cutoffTime is the cut-off asked for (now when zero), rounded up to the
// second; one in the future, or so far back that every session issued
// before it has expired, is refused.
func cutoffTime(asked, now time.Time, longest time.Duration) (time.Time, error) {
	before := asked
	if before.IsZero() {
		before = now
	}
	before = ceilSecond(before)
	switch {
	case before.After(now.Add(futureSkew)):
		return before, fmt.Errorf("%w: cut-off %s is in the future: it would deny sessions not issued yet (suspend the tenant to stop new sessions)", ErrInvalid, before.Format(isoSecond))
	case !before.Add(longest).After(now):
		return before, fmt.Errorf("%w: cut-off %s: every session issued before it has expired (the longest profile duration is %s): nothing to revoke", ErrInvalid, before.Format(isoSecond), longest)
	}
	return before, nil
}

// read lists the policy's versions and reads its default version, with the
// cut-offs of the pending versions (written by others since the last
// read) merged in.
func (w writer) read(ctx context.Context, pending []string) (versions []version, base version, current string, doc *document, err error) {
	if versions, err = w.versions(ctx); err != nil {
		return
	}
	base, ok := defaultVersion(versions)
	if !ok {
		err = fmt.Errorf("revoke: policy %s has no default version", w.arn)
		return
	}
	if current, err = w.document(ctx, base.id); err != nil {
		return
	}
	if doc, err = parseDocument(current); err != nil {
		err = fmt.Errorf("revoke: policy %s version %s: %w", w.arn, base.id, err)
		return
	}
	for _, id := range pending {
		text, err := w.document(ctx, id)
		if isNoSuchEntity(err) {
			return nil, base, "", nil, fmt.Errorf("%w: version %s, written by another revoke meanwhile, was deleted before it could be merged: run again", ErrConflict, id)
		}
		if err != nil {
			return nil, base, "", nil, err
		}
		other, err := parseDocument(text)
		if err != nil {
			return nil, base, "", nil, fmt.Errorf("revoke: policy %s version %s: %w", w.arn, id, err)
		}
		doc.merge(other)
	}
	return versions, base, current, doc, nil
}

// check validates cfg and fills its defaults.
func (cfg *Config) check() error {
	var errs []error
	if !policyARNPattern.MatchString(cfg.PolicyARN) {
		errs = append(errs, fmt.Errorf("%w: policy ARN %q: not a customer-managed IAM policy ARN", ErrInvalid, cfg.PolicyARN))
	}
	if cfg.LongestDuration <= 0 {
		errs = append(errs, fmt.Errorf("%w: the longest session duration must be positive", ErrInvalid))
	}
	if cfg.TenantRule == nil {
		errs = append(errs, fmt.Errorf("%w: no tenant rule", ErrInvalid))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return errors.Join(errs...)
}

// target is the condition key and value c cuts off by, checked.
func (cfg *Config) target(c Cutoff) (key, value string, err error) {
	switch {
	case (c.Tenant == "") == (c.Subject == ""):
		return "", "", fmt.Errorf("%w: name a tenant or a subject, not both or neither", ErrInvalid)
	case c.Tenant != "":
		if err := cfg.TenantRule.Check(c.Tenant); err != nil {
			return "", "", fmt.Errorf("%w: tenant: %w", ErrInvalid, err)
		}
		return TenantKey, c.Tenant, nil
	default:
		if err := CheckSubject(c.Subject); err != nil {
			return "", "", err
		}
		return SubjectKey, c.Subject, nil
	}
}

// tooLarge says how large the policy would be and what to do instead.
func tooLarge(res Result, doc *document, longest time.Duration) error {
	oldest := time.Time{}
	for _, values := range doc.cutoffs {
		for _, t := range values {
			if oldest.IsZero() || t.Before(oldest) {
				oldest = t
			}
		}
	}
	return fmt.Errorf("%w: with this cut-off the revocation policy would take %d characters, over IAM's %d for a managed policy (%d cut-off statements); nothing was written. "+
		"Suspend the tenant instead (it gets no new sessions, and those it has end within %s), "+
		"wait until the oldest cut-off (%s) is dropped at %s, "+
		"or attach a second revocation policy to the access role and revoke through a config naming it",
		ErrTooLarge, res.Characters, MaxCharacters, res.Statements, longest,
		oldest.Format(isoSecond), oldest.Add(longest).Format(isoSecond))
}

// version is one version of the policy.
type version struct {
	id        string
	number    int
	isDefault bool
}

// writer reads and writes the versions of one policy.
type writer struct {
	iam IAM
	arn string
}

func (w writer) versions(ctx context.Context) ([]version, error) {
	var out []version
	in := &iam.ListPolicyVersionsInput{PolicyArn: aws.String(w.arn)}
	for {
		page, err := w.iam.ListPolicyVersions(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("revoke: list the versions of policy %s: %w", w.arn, err)
		}
		for _, v := range page.Versions {
			id := aws.ToString(v.VersionId)
			n, err := strconv.Atoi(strings.TrimPrefix(id, "v"))
			if !strings.HasPrefix(id, "v") || err != nil {
				return nil, fmt.Errorf("revoke: policy %s: version id %q is not v and a number", w.arn, id)
			}
			out = append(out, version{id: id, number: n, isDefault: v.IsDefaultVersion})
		}
		if !page.IsTruncated || page.Marker == nil {
			return out, nil
		}
		in.Marker = page.Marker
	}
}

func (w writer) document(ctx context.Context, id string) (string, error) {
	out, err := w.iam.GetPolicyVersion(ctx, &iam.GetPolicyVersionInput{PolicyArn: aws.String(w.arn), VersionId: aws.String(id)})
	if err != nil {
		return "", fmt.Errorf("revoke: read policy %s version %s: %w", w.arn, id, err)
	}
	if out.PolicyVersion == nil || out.PolicyVersion.Document == nil {
		return "", fmt.Errorf("revoke: read policy %s version %s: %w", w.arn, id, errNoDocument)
	}
	text, err := decodeDocument(*out.PolicyVersion.Document)
	if err != nil {
		return "", fmt.Errorf("revoke: read policy %s version %s: %w", w.arn, id, err)
	}
	return text, nil
}

func (w writer) delete(ctx context.Context, id string) error {
	_, err := w.iam.DeletePolicyVersion(ctx, &iam.DeletePolicyVersionInput{PolicyArn: aws.String(w.arn), VersionId: aws.String(id)})
	if err != nil && !isNoSuchEntity(err) { // another writer deleted it first
		return fmt.Errorf("revoke: delete policy %s version %s to stay within IAM's %d versions: %w", w.arn, id, MaxVersions, err)
	}
	return nil
}

func (w writer) create(ctx context.Context, text string) (string, error) {
	out, err := w.iam.CreatePolicyVersion(ctx, &iam.CreatePolicyVersionInput{
		PolicyArn: aws.String(w.arn), PolicyDocument: aws.String(text), SetAsDefault: true,
	})
	if err != nil {
		return "", fmt.Errorf("revoke: write policy %s: %w", w.arn, err)
	}
	if out.PolicyVersion == nil || out.PolicyVersion.VersionId == nil {
		return "", fmt.Errorf("revoke: write policy %s: IAM returned no version id", w.arn)
	}
	return *out.PolicyVersion.VersionId, nil
}

func defaultVersion(vs []version) (version, bool) {
	for _, v := range vs {
		if v.isDefault {
			return v, true
		}
	}
	return version{}, false
}

func oldestNonDefault(vs []version) (version, bool) {
	var oldest version
	for _, v := range vs {
		if !v.isDefault && (oldest.id == "" || v.number < oldest.number) {
			oldest = v
		}
	}
	return oldest, oldest.id != ""
}

// writtenMeanwhile are the versions listed after created was written that
// were not listed before and are numbered before it: written by others
// after Apply read the policy, so created may lack their cut-offs. IAM
// numbers versions in the order they are created.
func writtenMeanwhile(before, after []version, created string) []string {
	var out []string
	for _, v := range after {
		known := slices.ContainsFunc(before, func(b version) bool { return b.id == v.id })
		if !known && v.id != created && v.number < versionNumber(created) {
			out = append(out, v.id)
		}
	}
	return out
}

// versionNumber is N of the version id vN, or 0.
func versionNumber(id string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(id, "v"))
	return n
}

func isNoSuchEntity(err error) bool {
	var e *types.NoSuchEntityException
	return errors.As(err, &e)
}
