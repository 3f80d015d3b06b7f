package awsiam

import (
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/textproto"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/tokenvendor/tokenvendor/wire"
)

// The wire format is wire.AWSIAMRequest's.
const (
	// ServerIDHeader must be among the signed headers, holding the server
	// id the service is configured with, so that a request signed for
	// another service (or another tokenvendor) is refused.
	ServerIDHeader = wire.ServerIDHeader
	// MaxSignedBytes caps the header value.
	MaxSignedBytes = 16 << 10
	maxHeaders     = 32
	maxBodyBytes   = 256
	amzDateFormat  = "20060102T150405Z"
	stsVersion     = "2011-06-15"
)

// SignedRequest is a parsed, well-formed signed GetCallerIdentity request.
// Parse checks its shape only; whether the signature holds is for STS to say.
type SignedRequest struct {
	// Header holds the signed headers and Authorization, names canonical.
	Header http.Header
	Body   string
	// Date is X-Amz-Date.
	Date time.Time
	// AccessKeyID, Region and Service come from the credential scope.
	AccessKeyID, Region, Service string
	// SignedHeaders are the lower-case names the signature covers.
	SignedHeaders []string
}

// LogValue keeps the signature and the caller's session token out of
// every log.
func (SignedRequest) LogValue() slog.Value { return slog.StringValue("REDACTED") }

var (
	scopeDatePattern = regexp.MustCompile(`^\d{8}$`)
	regionPattern    = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d{1,2}$`)
	signaturePattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
	accessKeyPattern = regexp.MustCompile(`^[A-Z0-9]{16,128}$`)
	headerNameList   = regexp.MustCompile(`^[a-z0-9-]+(;[a-z0-9-]+)*$`)
)

// forwarded are the only headers a caller may hand the service to send on:
// what a SigV4 GetCallerIdentity needs.
var forwarded = map[string]bool{
	"Authorization": true, "Host": true, "X-Amz-Date": true, "X-Amz-Security-Token": true,
	"X-Amz-Content-Sha256": true, "Content-Type": true, "Content-Length": true,
	textproto.CanonicalMIMEHeaderKey(ServerIDHeader): true,
}

// Parse decodes the value of an "Authorization: AWS-IAM" header and checks
// that it is a SigV4-signed sts:GetCallerIdentity POST and nothing else:
// no other action or parameter, no URL (the service alone chooses where
// it goes), no header that is not signed or not needed for one.
func Parse(signed string) (*SignedRequest, error) {
	if len(signed) > MaxSignedBytes {
		return nil, fmt.Errorf("signed request over %d bytes", MaxSignedBytes)
	}
	w, err := wire.DecodeAWSIAMRequest(signed)
	if err != nil {
		return nil, err
	}
	if w.Method != http.MethodPost {
		return nil, errors.New("method must be POST")
	}
	if err := checkBody(w.Body); err != nil {
		return nil, err
	}
	if len(w.Headers) > maxHeaders {
		return nil, fmt.Errorf("over %d headers", maxHeaders)
	}
	r := &SignedRequest{Header: http.Header{}, Body: w.Body}
	for name, value := range w.Headers {
		if !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(value) {
			return nil, errors.New("a header name or value is not valid HTTP")
		}
		canonical := textproto.CanonicalMIMEHeaderKey(name)
		if !forwarded[canonical] {
			// Anything else could change how STS answers (Accept,
			// Accept-Encoding) or what a proxy on the way does.
			return nil, fmt.Errorf("header %s may not be sent on", canonical)
		}
		if _, dup := r.Header[canonical]; dup {
			return nil, fmt.Errorf("header %s given twice", canonical)
		}
		r.Header[canonical] = []string{strings.TrimSpace(value)}
	}
	if err := r.parseAuthorization(); err != nil {
		return nil, err
	}
	date, err := time.Parse(amzDateFormat, r.Header.Get("X-Amz-Date"))
	if err != nil {
		return nil, errors.New("X-Amz-Date missing or not yyyymmddThhmmssZ")
	}
	r.Date = date
	for _, need := range []string{"host", "x-amz-date", strings.ToLower(ServerIDHeader)} {
		if !slices.Contains(r.SignedHeaders, need) {
			return nil, fmt.Errorf("the signature does not cover %s", need)
		}
	}
	for name := range r.Header {
		lower := strings.ToLower(name)
		if lower != "authorization" && !slices.Contains(r.SignedHeaders, lower) {
			return nil, fmt.Errorf("header %s is not signed", name)
		}
	}
	for _, name := range r.SignedHeaders {
		if name == "host" {
			continue // the service sends its own endpoint's host
		}
		if _, ok := r.Header[textproto.CanonicalMIMEHeaderKey(name)]; !ok {
			return nil, fmt.Errorf("signed header %s is missing", name)
		}
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/x-www-form-urlencoded" {
			return nil, errors.New("Content-Type must be application/x-www-form-urlencoded")
		}
	}
	if cl := r.Header.Get("Content-Length"); cl != "" && cl != fmt.Sprint(len(r.Body)) {
		return nil, errors.New("Content-Length does not match the body")
	}
	return r, nil
}

// checkBody accepts exactly Action=GetCallerIdentity and Version, in any
// order and encoding.
func checkBody(body string) error {
	if len(body) > maxBodyBytes {
		return errors.New("body too long for GetCallerIdentity")
	}
	form, err := url.ParseQuery(body)
	if err != nil {
		return errors.New("body is not a form")
	}
	if len(form) != 2 || len(form["Action"]) != 1 || len(form["Version"]) != 1 ||
		form.Get("Action") != "GetCallerIdentity" || form.Get("Version") != stsVersion {
		return errors.New("body must be Action=GetCallerIdentity&Version=" + stsVersion + " and nothing else")
	}
	return nil
}

// parseAuthorization reads "AWS4-HMAC-SHA256 Credential=AKID/yyyymmdd/region/service/aws4_request,
// SignedHeaders=a;b, Signature=hex".
func (r *SignedRequest) parseAuthorization() error {
	a := r.Header.Get("Authorization")
	rest, ok := strings.CutPrefix(a, "AWS4-HMAC-SHA256 ")
	if !ok {
		return errors.New("Authorization must be an AWS4-HMAC-SHA256 signature")
	}
	fields := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || fields[k] != "" {
			return errors.New("Authorization is not Credential, SignedHeaders and Signature")
		}
		fields[k] = v
	}
	if len(fields) != 3 || !signaturePattern.MatchString(fields["Signature"]) || !headerNameList.MatchString(fields["SignedHeaders"]) {
		return errors.New("Authorization is not Credential, SignedHeaders and Signature")
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || !accessKeyPattern.MatchString(scope[0]) || !scopeDatePattern.MatchString(scope[1]) ||
		!regionPattern.MatchString(scope[2]) || scope[4] != "aws4_request" {
		return errors.New("Authorization credential scope is not access-key/date/region/service/aws4_request")
	}
	if scope[3] != "sts" {
		return errors.New("the request is signed for another service than sts")
	}
	if d := r.Header.Get("X-Amz-Date"); len(d) < 8 || d[:8] != scope[1] {
		return errors.New("the credential scope's date is not X-Amz-Date's")
	}
	r.AccessKeyID, r.Region, r.Service = scope[0], scope[2], scope[3]
	r.SignedHeaders = strings.Split(fields["SignedHeaders"], ";")
	return nil
}
