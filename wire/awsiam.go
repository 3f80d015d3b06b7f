package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
)

// GetCallerIdentityBody is the body of the one request an AWS-IAM caller
// signs.
const GetCallerIdentityBody = "Action=GetCallerIdentity&Version=2011-06-15"

// AWSIAMRequest is what an AWS-IAM caller presents after "AWS-IAM ": an
// sts:GetCallerIdentity request SigV4-signed with its own AWS credentials,
// which tokenvendor sends to STS to learn who signed it. There is no URL:
// tokenvendor alone chooses where it goes.
type AWSIAMRequest struct {
	Method  string            `json:"method"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

// LogValue keeps the signature and the caller's session token out of every
// log.
func (AWSIAMRequest) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// String keeps the signature and the session token out of fmt's output.
func (AWSIAMRequest) String() string { return "REDACTED" }

// GoString is String, so %#v redacts too.
func (r AWSIAMRequest) GoString() string { return r.String() }

// Encode is r as presented: base64url without padding of its JSON.
func (r AWSIAMRequest) Encode() (string, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// DecodeAWSIAMRequest reads what Encode wrote, strictly: one JSON object of
// method, headers and body, and nothing else. Whether it is a well-formed
// signed request is the server's to check.
func DecodeAWSIAMRequest(s string) (AWSIAMRequest, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return AWSIAMRequest{}, errors.New("not base64url without padding")
	}
	var r AWSIAMRequest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return AWSIAMRequest{}, errors.New("not a JSON object of method, headers and body")
	}
	if _, err := dec.Token(); err != io.EOF {
		return AWSIAMRequest{}, errors.New("trailing data after the JSON object")
	}
	return r, nil
}
