package revoke

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 4, 15, 0, 0, 0, time.UTC)

func TestDocumentWithoutCutoffsHoldsThePlaceholder(t *testing.T) {
	d, err := parseDocument(`{"Version":"2012-10-17","Statement":[` + PlaceholderStatement + `]}`)
	if err != nil {
		t.Fatal(err)
	}
	d.add(TenantKey, "acme", t0)
	d.expire(t0.Add(time.Hour), time.Hour)
	got, statements, err := d.render()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"Version":"2012-10-17","Statement":[` + PlaceholderStatement + `]}`; got != want || statements != 0 {
		t.Errorf("render = %s (%d statements), want the placeholder alone", got, statements)
	}
}

func TestParseDocument(t *testing.T) {
	cut := `{"Sid":"TenantsBefore20261204T150000Z","Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/TenantID":["acme"]},"DateLessThan":{"aws:TokenIssueTime":"2026-12-04T15:00:00Z"}}}`
	tests := []struct {
		name        string
		text        string
		wantErr     string
		wantCutoffs int
		wantForeign int
	}{
		{name: "a cut-off", text: `{"Version":"2012-10-17","Statement":[` + cut + `]}`, wantCutoffs: 1},
		{name: "the placeholder", text: `{"Version":"2012-10-17","Statement":[` + PlaceholderStatement + `]}`},
		{name: "an Id is kept", text: `{"Version":"2012-10-17","Id":"revocations","Statement":[` + cut + `]}`, wantCutoffs: 1},
		{name: "another condition key is foreign", text: `{"Version":"2012-10-17","Statement":[` + strings.Replace(cut, "aws:PrincipalTag/TenantID", "aws:PrincipalTag/Team", 1) + `]}`, wantForeign: 1},
		{name: "an Allow is foreign", text: `{"Version":"2012-10-17","Statement":[` + strings.Replace(cut, "Deny", "Allow", 1) + `]}`, wantForeign: 1},
		{name: "a third condition is foreign", text: `{"Version":"2012-10-17","Statement":[` + strings.Replace(cut, `"Condition":{`, `"Condition":{"Bool":{"aws:SecureTransport":"false"},`, 1) + `]}`, wantForeign: 1},
		{name: "an all-digit date is foreign", text: `{"Version":"2012-10-17","Statement":[` + strings.Replace(cut, "2026-12-04T15:00:00Z", "1796396400", 1) + `]}`, wantForeign: 1},
		{name: "not JSON", text: `{"Version":`, wantErr: "not a JSON object"},
		{name: "an old policy language", text: `{"Version":"2008-10-17","Statement":[` + cut + `]}`, wantErr: "Version"},
		{name: "an unknown element", text: `{"Version":"2012-10-17","Statement":[],"Extra":1}`, wantErr: `"Extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := parseDocument(tt.text)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := len(d.cutoffs[TenantKey]); got != tt.wantCutoffs || len(d.foreign) != tt.wantForeign {
				t.Errorf("%d cut-offs, %d foreign; want %d, %d", got, len(d.foreign), tt.wantCutoffs, tt.wantForeign)
			}
			out, _, err := d.render()
			if err != nil {
				t.Fatal(err)
			}
			if !sameDocument(out, tt.text) {
				t.Errorf("render changed the document:\n%s\nwas\n%s", out, tt.text)
			}
		})
	}
}

func TestDecodeDocumentAsIAMEncodesIt(t *testing.T) {
	text := `{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Deny","Action":"s3:*","Resource":"arn:aws:s3:::b/a+b c%"}]}`
	for name, in := range map[string]string{
		"RFC 3986, + left as is": strings.NewReplacer("{", "%7B", "}", "%7D", `"`, "%22", ":", "%3A", " ", "%20", "%", "%25", "[", "%5B", "]", "%5D", "/", "%2F", ",", "%2C").Replace(text),
		"plain JSON (moto)":      text,
	} {
		got, err := decodeDocument(in)
		if err != nil || got != text {
			t.Errorf("%s: decodeDocument = %q, %v", name, got, err)
		}
	}
}

func TestRenderRefusesAForeignStatementHoldingACutoffsSid(t *testing.T) {
	d, err := parseDocument(`{"Version":"2012-10-17","Statement":[{"Sid":"TenantsBefore20261204T150000Z","Effect":"Deny","Action":"s3:*","Resource":"*"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	d.add(TenantKey, "acme", t0)
	if _, _, err := d.render(); err == nil || !strings.Contains(err.Error(), "rename it") {
		t.Fatalf("render = %v", err)
	}
}

// FuzzDocument reads any document IAM could hold: what it writes back is
// valid JSON, reads back the same, and the statements it writes itself
// deny and never allow.
func FuzzDocument(f *testing.F) {
	f.Add(`{"Version":"2012-10-17","Statement":[` + PlaceholderStatement + `]}`)
	f.Add(`{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:SourceIdentity":"x"},"DateLessThan":{"aws:TokenIssueTime":"2026-12-04T15:00:00.5+02:00"}}}}`)
	f.Add(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}`)
	f.Fuzz(func(t *testing.T, text string) {
		d, err := parseDocument(text)
		if err != nil {
			return
		}
		d.add(TenantKey, "acme", t0)
		out, _, err := d.render()
		if err != nil {
			return
		}
		var top struct{ Statement []map[string]any }
		if err := json.Unmarshal([]byte(out), &top); err != nil {
			t.Fatalf("render wrote invalid JSON %q: %v", out, err)
		}
		again, err := parseDocument(out)
		if err != nil {
			t.Fatalf("render wrote %q, which does not read back: %v", out, err)
		}
		out2, _, err := again.render()
		if err != nil || out2 != out {
			t.Fatalf("render is not stable:\n%s\n%s (%v)", out, out2, err)
		}
		if len(top.Statement) <= len(d.foreign) {
			t.Fatalf("render wrote %d statements for %d foreign and a cut-off", len(top.Statement), len(d.foreign))
		}
		for _, s := range top.Statement[:len(top.Statement)-len(d.foreign)] {
			if s["Effect"] != "Deny" {
				t.Fatalf("a cut-off statement that does not deny: %v", s)
			}
		}
	})
}
