package wire

// ErrorBody is the body of every error answer.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Codes of ErrorBody: stable, for programs to act on.
const (
	// CodeInvalidRequest: a malformed body, or no profile named while
	// several are configured (400).
	CodeInvalidRequest = "invalid_request"
	// CodeInvalidTenant: a tenant id outside the pattern (400).
	CodeInvalidTenant = "invalid_tenant"
	// CodeUnauthenticated: no token, or one that does not verify (401).
	CodeUnauthenticated = "unauthenticated"
	// CodeForbidden: the caller may not have this tenant's credentials (403).
	CodeForbidden = "forbidden"
	// CodeUnknownProfile: no profile of that name (404).
	CodeUnknownProfile = "unknown_profile"
	// CodeNotFound: no such route (404).
	CodeNotFound = "not_found"
	// CodeMethodNotAllowed: the route does not take that method (405).
	CodeMethodNotAllowed = "method_not_allowed"
	// CodeRequestTooLarge: a body over 64 KiB (413).
	CodeRequestTooLarge = "request_too_large"
	// CodeRateLimited: too many requests; Retry-After says when to try
	// again (429).
	CodeRateLimited = "rate_limited"
	// CodeUpstreamError: STS refused (502).
	CodeUpstreamError = "upstream_error"
	// CodeUpstreamUnavailable: STS or the identity provider cannot answer
	// now and nothing usable is cached; Retry-After says when to try again
	// (503).
	CodeUpstreamUnavailable = "upstream_unavailable"
	// CodeInternal: a fault of tokenvendor's own (500).
	CodeInternal = "internal"
	// CodeNotReady: /readyz while configuration or keys are not loaded (503).
	CodeNotReady = "not_ready"
	// CodeClientClosedRequest: the caller hung up before the answer; it
	// appears in metrics and the audit log, never on the wire to a caller
	// that is still there (499).
	CodeClientClosedRequest = "client_closed_request"
)
