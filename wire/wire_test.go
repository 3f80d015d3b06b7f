package wire_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/tokenvendor/tokenvendor/wire"
)

var expiration = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func validCredentials() wire.Credentials {
	return wire.Credentials{
		ProcessCredentials: wire.ProcessCredentials{
			Version: wire.CredentialsVersion, AccessKeyID: "ASIAACME", SecretAccessKey: "secret-acme",
			SessionToken: "session-acme", Expiration: wire.Time{Time: expiration},
		},
		TenantID: "acme", Profile: "objects",
	}
}

// TestJSON pins every body byte for byte: field names, order, and the
// expiration's form are a contract with every client.
func TestJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"credentials", validCredentials(),
			`{"Version":1,"AccessKeyId":"ASIAACME","SecretAccessKey":"secret-acme","SessionToken":"session-acme","Expiration":"2030-01-02T03:04:05Z","TenantId":"acme","Profile":"objects"}`},
		{"process credentials", validCredentials().ProcessCredentials,
			`{"Version":1,"AccessKeyId":"ASIAACME","SecretAccessKey":"secret-acme","SessionToken":"session-acme","Expiration":"2030-01-02T03:04:05Z"}`},
		{"container credentials", wire.ContainerCredentials{AccessKeyID: "ASIAACME", SecretAccessKey: "s", Token: "t", Expiration: wire.Time{Time: expiration}},
			`{"AccessKeyId":"ASIAACME","SecretAccessKey":"s","Token":"t","Expiration":"2030-01-02T03:04:05Z"}`},
		{"request", wire.CredentialsRequest{Profile: "objects", TenantID: "acme"}, `{"profile":"objects","tenant_id":"acme"}`},
		{"empty request", wire.CredentialsRequest{}, `{}`},
		{"error", wire.ErrorBody{Code: wire.CodeForbidden, Message: "no"}, `{"code":"forbidden","message":"no"}`},
		{"time in another zone, with a fraction", wire.Time{Time: time.Date(2030, 1, 2, 4, 4, 5, 999_999_999, time.FixedZone("CET", 3600))},
			`"2030-01-02T03:04:05Z"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("got  %s\nwant %s", b, tc.want)
			}
		})
	}
}

func TestCredentialsRoundTrip(t *testing.T) {
	want := validCredentials()
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var got wire.Credentials
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !got.Expiration.Equal(want.Expiration.Time) {
		t.Errorf("Expiration = %v, want %v", got.Expiration, want.Expiration)
	}
	got.Expiration = want.Expiration
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	var offset wire.Credentials
	if err := json.Unmarshal([]byte(`{"Expiration":"2030-01-02T04:04:05.5+01:00"}`), &offset); err != nil || !offset.Expiration.Equal(expiration.Add(500*time.Millisecond)) {
		t.Errorf("an RFC 3339 instant with an offset: %v, %v", offset.Expiration, err)
	}
}

// TestValidate: one rule for every reader of an answer; an answer without
// a SessionToken is as unusable as one without a key.
func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*wire.ProcessCredentials)
		want   string // in the error; "" for none
	}{
		{"complete", func(*wire.ProcessCredentials) {}, ""},
		{"no version", func(c *wire.ProcessCredentials) { c.Version = 0 }, "Version 0, want 1"},
		{"version 2", func(c *wire.ProcessCredentials) { c.Version = 2 }, "Version 2, want 1"},
		{"no access key", func(c *wire.ProcessCredentials) { c.AccessKeyID = "" }, "no AccessKeyId"},
		{"no secret", func(c *wire.ProcessCredentials) { c.SecretAccessKey = "" }, "no SecretAccessKey"},
		{"no session token", func(c *wire.ProcessCredentials) { c.SessionToken = "" }, "no SessionToken"},
		{"no expiration", func(c *wire.ProcessCredentials) { c.Expiration = wire.Time{} }, "no Expiration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validCredentials()
			tc.mutate(&c.ProcessCredentials)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tc.want != "" && (!errors.Is(err, wire.ErrIncomplete) || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate = %v, want ErrIncomplete naming %q", err, tc.want)
			}
		})
	}
}

// TestSecretsStayOut: printing or logging any credentials shape shows no
// secret.
func TestSecretsStayOut(t *testing.T) {
	c := validCredentials()
	cc := wire.ContainerCredentials{AccessKeyID: "ASIAACME", SecretAccessKey: "secret-acme", Token: "session-acme", Expiration: c.Expiration}
	signed := wire.AWSIAMRequest{Method: "POST", Headers: map[string]string{"Authorization": "AWS4-HMAC-SHA256 sig-acme"}, Body: wire.GetCallerIdentityBody}
	var log strings.Builder
	logger := slog.New(slog.NewJSONHandler(&log, nil))
	var printed strings.Builder
	for _, v := range []any{c, &c, c.ProcessCredentials, cc, signed} {
		logger.Info("x", "v", v)
		fmt.Fprintf(&printed, "%v %+v %s %#v\n", v, v, v, v)
	}
	for _, secret := range []string{"secret-acme", "session-acme", "sig-acme"} {
		if strings.Contains(log.String(), secret) {
			t.Errorf("log holds %q:\n%s", secret, log.String())
		}
	}
	for _, secret := range []string{"secret-acme", "session-acme", "sig-acme"} {
		if strings.Contains(printed.String(), secret) {
			t.Errorf("fmt output holds %q:\n%s", secret, printed.String())
		}
	}
	if !strings.Contains(log.String(), "ASIAACME") {
		t.Errorf("log lacks the access key id, which is no secret:\n%s", log.String())
	}
}

func TestAuthorization(t *testing.T) {
	for token, want := range map[string]string{
		"eyJhbGciOi":        "Bearer eyJhbGciOi",
		"AWS-IAM eyJtZXRo":  "AWS-IAM eyJtZXRo",
		"AWS-IAMeyJtZXRo":   "Bearer AWS-IAMeyJtZXRo",
		"Bearer eyJhbGciOi": "Bearer Bearer eyJhbGciOi",
	} {
		if got := wire.Authorization(token); got != want {
			t.Errorf("Authorization(%q) = %q, want %q", token, got, want)
		}
	}
}

// TestLoopback is the one meaning of loopback: localhost, and every
// loopback IP address, v4 or v6.
func TestLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "127.0.0.1": true, "127.0.0.2": true, "::1": true, "::ffff:127.0.0.1": true,
		"0.0.0.0": false, "::": false, "10.0.0.1": false, "tokenvendor.internal": false,
		"localhost.example.com": false, "[::1]": false, "": false,
	} {
		if got := wire.Loopback(host); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestCheckBaseURL(t *testing.T) {
	for _, tc := range []struct {
		url      string
		ok       bool
		insecure bool
	}{
		{url: "https://tokenvendor.example", ok: true},
		{url: "https://tokenvendor.example:8443/base/", ok: true},
		{url: "http://127.0.0.1:8080", ok: true},
		{url: "http://127.0.0.2:8080", ok: true},
		{url: "http://[::1]:8080", ok: true},
		{url: "http://localhost:8080", ok: true},
		{url: "http://tokenvendor.example", insecure: true},
		{url: "http://0.0.0.0:8080", insecure: true},
		{url: "ftp://tokenvendor.example"},
		{url: "tokenvendor.example"},
		{url: "/credentials"},
		{url: ""},
		{url: "http://%zz"},
	} {
		u, err := wire.CheckBaseURL(tc.url)
		switch {
		case tc.ok && (err != nil || u == nil):
			t.Errorf("CheckBaseURL(%q): %v", tc.url, err)
		case !tc.ok && err == nil:
			t.Errorf("CheckBaseURL(%q) accepted", tc.url)
		case !tc.ok && errors.Is(err, wire.ErrInsecureURL) != tc.insecure:
			t.Errorf("CheckBaseURL(%q) = %v; insecure %v", tc.url, err, tc.insecure)
		}
	}
}

func TestAWSIAMRequestRoundTrip(t *testing.T) {
	want := wire.AWSIAMRequest{Method: "POST", Headers: map[string]string{"Host": "sts.us-east-1.amazonaws.com", wire.ServerIDHeader: "tv"},
		Body: wire.GetCallerIdentityBody}
	s, err := want.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(s, "=+/") {
		t.Errorf("Encode = %q: not base64url without padding", s)
	}
	got, err := wire.DecodeAWSIAMRequest(s)
	if err != nil {
		t.Fatal(err)
	}
	if got.Method != want.Method || got.Body != want.Body || !maps.Equal(got.Headers, want.Headers) {
		t.Errorf("got %#v, want %#v", got, want)
	}
}

func TestDecodeAWSIAMRequestIsStrict(t *testing.T) {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct{ name, in, want string }{
		{"padding", enc(`{"method":"POST"}`) + "==", "not base64url"},
		{"std alphabet", "+/+/", "not base64url"},
		{"not JSON", enc("method=POST"), "not a JSON object"},
		{"unknown field", enc(`{"method":"POST","url":"https://evil.example"}`), "not a JSON object"},
		{"trailing", enc(`{"method":"POST"}{}`), "trailing data"},
	} {
		if _, err := wire.DecodeAWSIAMRequest(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestMatchesOpenAPI holds the types to openapi.yaml: each body's JSON
// names are its schema's properties, and the error codes its enum.
func TestMatchesOpenAPI(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromFile("../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	full := wire.CredentialsRequest{Profile: "p", TenantID: "t"}
	for schema, v := range map[string]any{
		"CredentialsRequest":   full,
		"Credentials":          validCredentials(),
		"ContainerCredentials": wire.ContainerCredentials{AccessKeyID: "A", SecretAccessKey: "S", Token: "T", Expiration: wire.Time{Time: expiration}},
		"Error":                wire.ErrorBody{Code: wire.CodeForbidden, Message: "m"},
	} {
		ref := doc.Components.Schemas[schema]
		if ref == nil {
			t.Fatalf("openapi.yaml has no schema %s", schema)
		}
		want := slices.Sorted(maps.Keys(ref.Value.Properties))
		b, _ := json.Marshal(v)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if got := slices.Sorted(maps.Keys(m)); !slices.Equal(got, want) {
			t.Errorf("%s: JSON names %v, openapi.yaml %v", schema, got, want)
		}
		if err := ref.Value.VisitJSON(m); err != nil {
			t.Errorf("%s: %s does not match its schema: %v", schema, b, err)
		}
	}
	var enum []string
	for _, v := range doc.Components.Schemas["Error"].Value.Properties["code"].Value.Enum {
		enum = append(enum, v.(string))
	}
	slices.Sort(enum)
	if codes := errorCodes(t); !slices.Equal(codes, enum) {
		t.Errorf("wire's Code constants %v, openapi.yaml's enum %v", codes, enum)
	}
	for name, want := range map[string]string{
		"TenantToken": wire.TenantTokenHeader,
	} {
		if got := doc.Components.Parameters[name].Value.Name; got != want {
			t.Errorf("openapi.yaml parameter %s is %q, want %q", name, got, want)
		}
	}
	for _, path := range []string{wire.CredentialsPath, wire.ContainerCredentialsPath} {
		if doc.Paths.Find(path) == nil {
			t.Errorf("openapi.yaml has no path %s", path)
		}
	}
}

// errorCodes are the values of the Code constants in errors.go, sorted.
func errorCodes(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	ast.Inspect(f, func(n ast.Node) bool {
		spec, ok := n.(*ast.ValueSpec)
		if !ok || !strings.HasPrefix(spec.Names[0].Name, "Code") {
			return true
		}
		lit := spec.Values[0].(*ast.BasicLit)
		s, err := strconv.Unquote(lit.Value)
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, s)
		return true
	})
	slices.Sort(codes)
	return codes
}

// TestStandardLibraryOnly keeps wire importable by any Go program without
// pulling in the server's dependencies.
func TestStandardLibraryOnly(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if first, _, _ := strings.Cut(imp, "/"); strings.Contains(first, ".") {
			t.Errorf("wire imports %s", imp)
		}
	}
}
