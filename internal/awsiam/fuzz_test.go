package awsiam_test

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/awsiam"
)

// FuzzParse feeds the parser of signed requests arbitrary values. It must
// never panic, and anything it accepts must be a POST of exactly
// GetCallerIdentity whose every header is signed, with the server id among
// them: nothing else may ever be sent on to STS.
func FuzzParse(f *testing.F) {
	now := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	signed := sign(f, "https://sts.us-east-1.amazonaws.com", ordersKey, serverID, now)
	f.Add(signed)
	f.Add(rewrite(f, signed, func(m map[string]any) { m["body"] = "Version=2011-06-15&Action=GetCallerIdentity" }))
	f.Add(rewrite(f, signed, func(m map[string]any) { m["url"] = "http://169.254.169.254/" }))
	f.Add(rewrite(f, signed, func(m map[string]any) { headers(m)["Content-Length"] = "43" }))
	f.Add("")
	f.Add("e30")
	f.Fuzz(func(t *testing.T, value string) {
		r, err := awsiam.Parse(value)
		if err != nil {
			return
		}
		if form, err := url.ParseQuery(r.Body); err != nil || len(form) != 2 ||
			fmt.Sprint(form["Action"], form["Version"]) != "[GetCallerIdentity] [2011-06-15]" {
			t.Fatalf("accepted body %q", r.Body)
		}
		for _, need := range []string{"host", "x-amz-date", "x-tokenvendor-server-id"} {
			if !slices.Contains(r.SignedHeaders, need) {
				t.Fatalf("accepted a request whose signature does not cover %s", need)
			}
		}
		for name := range r.Header {
			if l := strings.ToLower(name); l != "authorization" && !slices.Contains(r.SignedHeaders, l) {
				t.Fatalf("accepted unsigned header %s", name)
			}
		}
		if r.Service != "sts" {
			t.Fatalf("accepted a request signed for %s", r.Service)
		}
	})
}
