package api

import (
	"context"
	"errors"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/vend"
	"github.com/tokenvendor/tokenvendor/wire"
)

// Errors of the HTTP layer itself.
var (
	errBadBody          = errors.New("malformed request body")
	errTooLarge         = errors.New("request body over 64 KiB")
	errNotFound         = errors.New("no such route")
	errMethodNotAllowed = errors.New("method not allowed")
	errBusy             = errors.New("rate limited: too many requests in flight")
)

// statusClientClosedRequest is what a request is counted as (in metrics and
// the audit log) when its caller hung up while it waited, as nginx does: not
// a server error, so it does not page anyone.
const statusClientClosedRequest = 499

// retryAfterSeconds is what a caller is told to wait when STS or the
// identity provider cannot answer.
const retryAfterSeconds = 5

// problem is an error as the caller sees it.
type problem struct {
	status int
	body   wire.ErrorBody
}

// toProblem is the one mapping from errors to statuses. Client errors carry
// the error's own text, which this service writes and which never holds a
// token or an upstream message; server errors carry a fixed text, so that
// nothing STS or a dependency says reaches the caller.
func toProblem(err error) problem {
	p := func(status int, code, msg string) problem {
		return problem{status: status, body: wire.ErrorBody{Code: code, Message: msg}}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return p(statusClientClosedRequest, wire.CodeClientClosedRequest, "the caller closed the request before it was answered")
	case errors.Is(err, auth.ErrJWKSUnavailable):
		return p(http.StatusServiceUnavailable, wire.CodeUpstreamUnavailable, "the identity provider's key set cannot be fetched; try again later")
	case errors.Is(err, auth.ErrIdentityUnavailable):
		return p(http.StatusServiceUnavailable, wire.CodeUpstreamUnavailable, "STS cannot confirm the caller's AWS identity now; try again later")
	case errors.Is(err, auth.ErrUnknownPrincipal), errors.Is(err, auth.ErrNoTenantToken):
		return p(http.StatusForbidden, wire.CodeForbidden, err.Error())
	case errors.Is(err, auth.ErrUnauthenticated):
		return p(http.StatusUnauthorized, wire.CodeUnauthenticated, err.Error())
	case errors.Is(err, vend.ErrInvalidTenant):
		return p(http.StatusBadRequest, wire.CodeInvalidTenant, err.Error())
	case errors.Is(err, vend.ErrInvalidRequest), errors.Is(err, errBadBody):
		return p(http.StatusBadRequest, wire.CodeInvalidRequest, err.Error())
	case errors.Is(err, errTooLarge):
		return p(http.StatusRequestEntityTooLarge, wire.CodeRequestTooLarge, err.Error())
	case errors.Is(err, vend.ErrForbidden):
		return p(http.StatusForbidden, wire.CodeForbidden, err.Error())
	case errors.Is(err, vend.ErrRateLimited):
		return p(http.StatusTooManyRequests, wire.CodeRateLimited, err.Error())
	case errors.Is(err, errBusy):
		return p(http.StatusTooManyRequests, wire.CodeRateLimited, err.Error())
	case errors.Is(err, vend.ErrUnknownProfile):
		return p(http.StatusNotFound, wire.CodeUnknownProfile, err.Error())
	case errors.Is(err, errNotFound):
		return p(http.StatusNotFound, wire.CodeNotFound, err.Error())
	case errors.Is(err, errMethodNotAllowed):
		return p(http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed, err.Error())
	case errors.Is(err, vend.ErrTenantUnsettled):
		return p(http.StatusServiceUnavailable, wire.CodeUpstreamUnavailable, "the tenant changed and the tenant store cannot confirm how yet; try again later")
	case errors.Is(err, vend.ErrUpstreamUnavailable):
		return p(http.StatusServiceUnavailable, wire.CodeUpstreamUnavailable, "STS is unavailable or throttling and no usable credentials are cached; try again later")
	case errors.Is(err, vend.ErrUpstream):
		return p(http.StatusBadGateway, wire.CodeUpstreamError, "STS refused to issue credentials; the operator's log has the reason")
	default:
		return p(http.StatusInternalServerError, wire.CodeInternal, "internal error")
	}
}

// fail writes err as the caller sees it and returns what was written.
func (h *handlers) fail(w http.ResponseWriter, r *http.Request, err error) problem {
	p := toProblem(err)
	switch p.status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", h.challenge(r))
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	case http.StatusTooManyRequests:
		wait := time.Second
		if d, ok := vend.RetryAfter(err); ok {
			wait = d
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(max(wait, time.Second).Seconds()))))
	}
	if p.status >= 500 {
		h.log.Error("request failed", "route", routePattern(r), "status", p.status, "err", err)
	}
	writeJSON(w, p.status, p.body)
	return p
}

// challenge is a 401's WWW-Authenticate: the scheme the caller tried, with
// invalid_token, when the service accepts it; else every scheme it accepts.
func (h *handlers) challenge(r *http.Request) string {
	schemes := []string{wire.SchemeBearer}
	if s, ok := h.cfg.Authenticator.(interface{ Schemes() []string }); ok && len(s.Schemes()) > 0 {
		schemes = s.Schemes()
	}
	if a := r.Header.Get("Authorization"); a != "" {
		scheme, _, ok := schemed(r)
		if !ok && !strings.Contains(strings.TrimSpace(a), " ") {
			scheme = wire.SchemeBearer // the container route's bare token
		}
		if slices.Contains(schemes, scheme) {
			return scheme + ` realm="tokenvendor", error="invalid_token"`
		}
	}
	challenges := make([]string, len(schemes))
	for i, scheme := range schemes {
		challenges[i] = scheme + ` realm="tokenvendor"`
	}
	return strings.Join(challenges, ", ")
}
