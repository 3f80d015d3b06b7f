package revoke

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// IAM's limits on a customer-managed policy.
const (
	// MaxCharacters is the most characters a managed policy document may
	// hold (IAM does not count white space; the document is written
	// compact, so it has none outside its strings).
	MaxCharacters = 6144
	// MaxVersions is the most versions IAM keeps of a managed policy.
	MaxVersions = 5
)

// The condition keys a cut-off singles sessions out by, and the one that
// dates them.
const (
	// TenantKey is the session tag tokenvendor sets to the tenant id.
	TenantKey = "aws:PrincipalTag/TenantID"
	// SubjectKey is the SourceIdentity tokenvendor sets to the caller
	// (session.source_identity).
	SubjectKey = "aws:SourceIdentity"
	// IssueTimeKey is when the session's credentials were issued.
	IssueTimeKey = "aws:TokenIssueTime"
)

// PlaceholderStatement is the statement the revocation policy holds when
// no cut-off is left: IAM wants at least one, and this one denies nothing
// (no session was issued before 1970). The CloudFormation template creates
// the policy with it.
const PlaceholderStatement = `{"Sid":"PlaceholderDeniesNothing","Effect":"Deny","Action":"*","Resource":"*","Condition":{"DateLessThan":{"aws:TokenIssueTime":"1970-01-01T00:00:00Z"}}}`

// policyVersion is the only policy language version IAM knows.
const policyVersion = "2012-10-17"

// isoSecond is how a cut-off is written: ISO 8601 in UTC, whole seconds.
// IAM accepts it, and iam-simulate compares it as a date (an all-digit
// epoch it does not).
const isoSecond = "2006-01-02T15:04:05Z"

// sidTime is the cut-off as it appears in a statement id, which allows
// letters and digits only.
const sidTime = "20060102T150405Z"

// document is a revocation policy: the latest cut-off of each tenant and
// subject, and the statements tokenvendor did not write, kept as they are.
type document struct {
	// id is the policy's Id element, kept when it has one.
	id json.RawMessage
	// cutoffs maps a condition key (TenantKey or SubjectKey) to each
	// value's cut-off: sessions carrying it and issued before are denied.
	cutoffs map[string]map[string]time.Time
	// foreign are statements tokenvendor did not write, kept verbatim.
	foreign []json.RawMessage
	// expired counts the cut-off statements dropped by expire.
	expired int
	// read are the statements as parsed, to expire by statement.
	read []cutoffStatement
}

// cutoffStatement is one statement of ours: a key's values and their
// shared cut-off.
type cutoffStatement struct {
	key    string
	values []string
	before time.Time
}

// statement is the shape of every cut-off statement, in the order its
// fields are written.
type statement struct {
	Sid       string    `json:"Sid"`
	Effect    string    `json:"Effect"`
	Action    string    `json:"Action"`
	Resource  string    `json:"Resource"`
	Condition condition `json:"Condition"`
}

type condition struct {
	StringEquals map[string][]string `json:"StringEquals"`
	DateLessThan map[string]string   `json:"DateLessThan"`
}

// decodeDocument undoes the URL encoding IAM returns policy documents in
// (RFC 3986, so a + stays a +). A document that already starts as JSON is
// taken as it is: it cannot be encoded, as { would be %7B.
func decodeDocument(s string) (string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "{") {
		return s, nil
	}
	d, err := url.PathUnescape(s)
	if err != nil {
		return "", fmt.Errorf("URL-decode the policy document: %w", err)
	}
	return d, nil
}

// parseDocument reads a revocation policy: its cut-off statements into
// cut-offs, the placeholder into nothing, and any other statement verbatim.
func parseDocument(text string) (*document, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(text), &top); err != nil {
		return nil, fmt.Errorf("the policy document is not a JSON object: %w", err)
	}
	d := &document{cutoffs: map[string]map[string]time.Time{}}
	for k, v := range top {
		switch k {
		case "Version":
			var version string
			if err := json.Unmarshal(v, &version); err != nil || version != policyVersion {
				return nil, fmt.Errorf("the policy document's Version is %s, want %q", v, policyVersion)
			}
		case "Id":
			d.id = v
		case "Statement":
		default:
			return nil, fmt.Errorf("the policy document has an element %q tokenvendor does not know", k)
		}
	}
	var list []json.RawMessage
	raw := bytes.TrimSpace(top["Statement"])
	switch {
	case len(raw) == 0:
	case raw[0] == '[':
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, fmt.Errorf("the policy document's Statement: %w", err)
		}
	default:
		list = []json.RawMessage{raw}
	}
	for _, s := range list {
		switch c, ok := parseCutoff(s); {
		case ok:
			d.read = append(d.read, c)
			for _, v := range c.values {
				d.add(c.key, v, c.before)
			}
		case isPlaceholder(s):
		default:
			var compact bytes.Buffer
			if err := json.Compact(&compact, s); err != nil {
				return nil, fmt.Errorf("the policy document's Statement: %w", err)
			}
			d.foreign = append(d.foreign, compact.Bytes())
		}
	}
	return d, nil
}

// parseCutoff recognises a statement of the shape tokenvendor writes,
// whatever its Sid: Deny * on * when one key equals some values and the
// session was issued before a date.
func parseCutoff(raw json.RawMessage) (cutoffStatement, bool) {
	var s struct {
		Sid       string
		Effect    string
		Action    string
		Resource  string
		Condition map[string]map[string]json.RawMessage
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return cutoffStatement{}, false
	}
	equals, dated := s.Condition["StringEquals"], s.Condition["DateLessThan"]
	if s.Effect != "Deny" || s.Action != "*" || s.Resource != "*" || len(s.Condition) != 2 || len(equals) != 1 || len(dated) != 1 {
		return cutoffStatement{}, false
	}
	var c cutoffStatement
	for k, v := range equals {
		if k != TenantKey && k != SubjectKey {
			return cutoffStatement{}, false
		}
		c.key = k
		if json.Unmarshal(v, &c.values) != nil {
			var one string
			if json.Unmarshal(v, &one) != nil {
				return cutoffStatement{}, false
			}
			c.values = []string{one}
		}
	}
	var when string
	if json.Unmarshal(dated[IssueTimeKey], &when) != nil {
		return cutoffStatement{}, false
	}
	t, err := time.Parse(time.RFC3339, when)
	if err != nil {
		return cutoffStatement{}, false
	}
	c.before = ceilSecond(t)
	return c, true
}

// ceilSecond is t in UTC, rounded up to a whole second: a cut-off is
// written in whole seconds, and rounding down would let through sessions
// issued in the fraction cut.
func ceilSecond(t time.Time) time.Time {
	t = t.UTC()
	if s := t.Truncate(time.Second); !s.Equal(t) {
		return s.Add(time.Second)
	}
	return t
}

// isPlaceholder reports whether raw is PlaceholderStatement, in any layout.
func isPlaceholder(raw json.RawMessage) bool {
	var got, want any
	if json.Unmarshal(raw, &got) != nil {
		return false
	}
	_ = json.Unmarshal([]byte(PlaceholderStatement), &want)
	return reflect.DeepEqual(got, want)
}

// add cuts off sessions carrying value under key issued before t. A value
// needs only its latest cut-off: sessions issued before an earlier one
// were issued before the later one too.
func (d *document) add(key, value string, t time.Time) {
	if d.cutoffs[key] == nil {
		d.cutoffs[key] = map[string]time.Time{}
	}
	if old, ok := d.cutoffs[key][value]; !ok || t.After(old) {
		d.cutoffs[key][value] = t
	}
}

// merge adds every cut-off of o (another version of the policy) and its
// foreign statements that d lacks.
func (d *document) merge(o *document) {
	for key, values := range o.cutoffs {
		for v, t := range values {
			d.add(key, v, t)
		}
	}
	for _, f := range o.foreign {
		if !slices.ContainsFunc(d.foreign, func(g json.RawMessage) bool { return bytes.Equal(f, g) }) {
			d.foreign = append(d.foreign, f)
		}
	}
}

// expire drops every cut-off made longest or more before now: a session
// issued before it has expired, so it cuts off nothing. It counts the
// statements read that it drops.
func (d *document) expire(now time.Time, longest time.Duration) {
	dead := func(t time.Time) bool { return !t.Add(longest).After(now) }
	for _, c := range d.read {
		if dead(c.before) {
			d.expired++
		}
	}
	for key, values := range d.cutoffs {
		for v, t := range values {
			if dead(t) {
				delete(values, v)
			}
		}
		if len(values) == 0 {
			delete(d.cutoffs, key)
		}
	}
}

// statements are the cut-off statements: one per key and cut-off, oldest
// first, tenants before subjects, values sorted.
func (d *document) statements() []statement {
	type group struct {
		key    string
		before time.Time
	}
	groups := map[group][]string{}
	for key, values := range d.cutoffs {
		for v, t := range values {
			g := group{key, t}
			groups[g] = append(groups[g], v)
		}
	}
	keys := make([]group, 0, len(groups))
	for g := range groups {
		keys = append(keys, g)
	}
	slices.SortFunc(keys, func(a, b group) int {
		if c := a.before.Compare(b.before); c != 0 {
			return c
		}
		return rank(a.key) - rank(b.key)
	})
	out := make([]statement, 0, len(keys))
	for _, g := range keys {
		values := groups[g]
		slices.Sort(values)
		out = append(out, statement{
			Sid:      kindOf(g.key) + "Before" + g.before.Format(sidTime),
			Effect:   "Deny",
			Action:   "*",
			Resource: "*",
			Condition: condition{
				StringEquals: map[string][]string{g.key: values},
				DateLessThan: map[string]string{IssueTimeKey: g.before.Format(isoSecond)},
			},
		})
	}
	return out
}

// rank orders the statements of one cut-off: tenants, then subjects.
func rank(key string) int {
	if key == SubjectKey {
		return 1
	}
	return 0
}

// kindOf names what a key cuts off by, for statement ids.
func kindOf(key string) string {
	if key == SubjectKey {
		return "Subjects"
	}
	return "Tenants"
}

// render writes the document compact: the cut-off statements, then the
// foreign ones, or the placeholder when there is neither. It also returns
// how many cut-off statements it holds.
func (d *document) render() (string, int, error) {
	cutoffs := d.statements()
	list := make([]json.RawMessage, 0, len(cutoffs)+len(d.foreign)+1)
	sids := map[string]bool{}
	for _, s := range cutoffs {
		b, err := marshal(s)
		if err != nil {
			return "", 0, err
		}
		sids[s.Sid] = true
		list = append(list, b)
	}
	for _, f := range d.foreign {
		var s struct{ Sid string }
		_ = json.Unmarshal(f, &s)
		if s.Sid != "" && sids[s.Sid] {
			return "", 0, fmt.Errorf("a statement tokenvendor did not write has the statement id %s, which a cut-off needs: rename it", s.Sid)
		}
		sids[s.Sid] = true
		list = append(list, f)
	}
	if len(list) == 0 {
		list = append(list, json.RawMessage(PlaceholderStatement))
	}
	top := struct {
		Version   string            `json:"Version"`
		ID        json.RawMessage   `json:"Id,omitempty"`
		Statement []json.RawMessage `json:"Statement"`
	}{policyVersion, d.id, list}
	b, err := marshal(top)
	if err != nil {
		return "", 0, err
	}
	return string(b), len(cutoffs), nil
}

// marshal writes v compact, leaving <, > and & as they are.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// characters counts a document as IAM does against MaxCharacters.
func characters(doc string) int { return utf8.RuneCountInString(doc) }

// sameDocument reports whether two documents say the same, whatever their
// layout.
func sameDocument(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
