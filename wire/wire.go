// Package wire is tokenvendor's HTTP contract as Go types: the routes, the
// headers and Authorization schemes it reads, the bodies of its credentials
// routes, the error body and its codes, the credential_process output, and
// the signed request an AWS-IAM caller presents. The server, the Go client
// and credential-process all use it, so that they cannot drift; openapi.yaml
// describes the same JSON, and a test holds the two together.
//
// It imports the standard library only, so that any Go program can use it.
package wire

import (
	"errors"
	"net"
	"net/url"
	"strings"
)

// Routes.
const (
	// CredentialsPath answers a POST with Credentials.
	CredentialsPath = "/credentials"
	// ContainerCredentialsPath answers a GET with ContainerCredentials; the
	// profile is its last segment.
	ContainerCredentialsPath = "/v1/container-credentials/{profile}"
)

// Headers a caller may send beside Authorization.
const (
	// TenantTokenHeader carries a JWT signed upstream that names the tenant
	// of an AWS-IAM caller whose tenant must come from a token.
	TenantTokenHeader = "X-Tokenvendor-Tenant-Token"
	// ServerIDHeader is the header an AWS-IAM caller's signature must cover,
	// holding the server id of the tokenvendor it is meant for.
	ServerIDHeader = "X-Tokenvendor-Server-Id"
)

// Authorization schemes.
const (
	// SchemeBearer presents a JWT.
	SchemeBearer = "Bearer"
	// SchemeAWSIAM presents an encoded AWSIAMRequest.
	SchemeAWSIAM = "AWS-IAM"
)

// Authorization is the Authorization value that presents token: as it is
// when it already names the AWS-IAM scheme, else as a Bearer token.
func Authorization(token string) string {
	if strings.HasPrefix(token, SchemeAWSIAM+" ") {
		return token
	}
	return SchemeBearer + " " + token
}

// Loopback reports whether host (a URL's Hostname) is "localhost" or a
// loopback IP address: a host that traffic reaches without crossing a
// network.
func Loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ErrInsecureURL is CheckBaseURL's refusal of plain http to a host that is
// not a Loopback one.
var ErrInsecureURL = errors.New("must be https unless its host is a loopback address: the answer holds credentials")

// CheckBaseURL parses the base URL of a tokenvendor a client sends a token
// to and gets credentials from: absolute, and https unless its host is a
// Loopback one (ErrInsecureURL).
func CheckBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, errors.New("not an absolute http(s) URL")
	}
	if u.Scheme == "http" && !Loopback(u.Hostname()) {
		return nil, ErrInsecureURL
	}
	return u, nil
}
