package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/tokenvendor/tokenvendor/internal/audit"
	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/vend"
	"github.com/tokenvendor/tokenvendor/wire"
)

// MaxBodyBytes caps a request body.
const MaxBodyBytes = 64 << 10

type handlers struct {
	cfg Config
	log *slog.Logger
}

type statusBody struct {
	Status string `json:"status"`
}

func (h *handlers) credentials(w http.ResponseWriter, r *http.Request) {
	var cred auth.Credential
	if scheme, value, ok := schemed(r); ok {
		cred = auth.Credential{Scheme: scheme, Value: value}
	}
	h.vend(w, r, cred, func() (vend.Request, error) {
		var body wire.CredentialsRequest
		err := decodeBody(w, r, &body)
		return vend.Request{Profile: body.Profile, TenantID: body.TenantID}, err
	}, func(c vend.Credentials) any {
		return wire.Credentials{
			ProcessCredentials: wire.ProcessCredentials{
				Version:         wire.CredentialsVersion,
				AccessKeyID:     c.AccessKeyID,
				SecretAccessKey: c.SecretAccessKey,
				SessionToken:    c.SessionToken,
				Expiration:      wire.Time{Time: c.Expiration},
			},
			TenantID: c.TenantID,
			Profile:  c.Profile,
		}
	})
}

// containerCredentials serves AWS SDKs' container credential provider,
// which sends the token in Authorization verbatim, without a scheme.
func (h *handlers) containerCredentials(w http.ResponseWriter, r *http.Request) {
	cred := auth.Credential{Scheme: auth.SchemeBearer, Value: strings.TrimSpace(r.Header.Get("Authorization"))}
	if scheme, value, ok := schemed(r); ok {
		cred = auth.Credential{Scheme: scheme, Value: value}
	}
	h.vend(w, r, cred, func() (vend.Request, error) {
		return vend.Request{Profile: chi.URLParam(r, "profile")}, nil
	}, func(c vend.Credentials) any {
		return wire.ContainerCredentials{
			AccessKeyID:     c.AccessKeyID,
			SecretAccessKey: c.SecretAccessKey,
			Token:           c.SessionToken,
			Expiration:      wire.Time{Time: c.Expiration},
		}
	})
}

// vend is the one path behind every credentials route: authenticate the
// caller, read the request, vend, write the route's response shape, and
// record the decision in the audit log.
func (h *handlers) vend(w http.ResponseWriter, r *http.Request, cred auth.Credential, read func() (vend.Request, error), shape func(vend.Credentials) any) {
	ev := audit.Event{
		Time:       time.Now().UTC(),
		RequestID:  requestID(r),
		Route:      routePattern(r),
		RemoteAddr: r.RemoteAddr,
	}
	defer func() { h.record(ev) }()
	refuse := func(err error) {
		p := h.fail(w, r, err)
		ev.Status, ev.Code, ev.Outcome = p.status, p.body.Code, audit.Refused
		if p.status >= 500 {
			ev.Outcome = audit.Failed
		}
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		cred.ClientCert = r.TLS.PeerCertificates[0]
	}
	cred.TenantToken = strings.TrimSpace(r.Header.Get(wire.TenantTokenHeader))
	caller, err := h.cfg.Authenticator.Authenticate(r.Context(), cred)
	if err != nil {
		refuse(err)
		return
	}
	ev.Subject, ev.ClientID = caller.Subject, caller.ClientID
	req, err := read()
	if err != nil {
		refuse(err)
		return
	}
	g, err := h.cfg.Vendor.Vend(r.Context(), caller, req)
	ev.TenantID, ev.Profile, ev.Cache, ev.RoleSessionName, ev.Refusal = g.TenantID, g.Profile, string(g.Cache), g.SessionName, g.Refusal
	if err != nil {
		refuse(err)
		return
	}
	expiration := g.Expiration.UTC()
	ev.Outcome, ev.Status, ev.AccessKeyID, ev.Expiration = audit.Granted, http.StatusOK, g.AccessKeyID, &expiration
	writeJSON(w, http.StatusOK, shape(g.Credentials))
}

// record writes ev to the audit log. A sink that fails is reported in the
// operational log; the request is not failed for it.
func (h *handlers) record(ev audit.Event) {
	if err := h.cfg.Auditor.Record(ev); err != nil {
		h.log.Error("audit record not written", "request_id", ev.RequestID, "err", err)
	}
}

func (h *handlers) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, statusBody{Status: "ok"})
}

func (h *handlers) readyz(w http.ResponseWriter, _ *http.Request) {
	if !h.cfg.Ready() {
		writeJSON(w, http.StatusServiceUnavailable, wire.ErrorBody{Code: wire.CodeNotReady, Message: "configuration or identity provider key set not loaded"})
		return
	}
	writeJSON(w, http.StatusOK, statusBody{Status: "ready"})
}

func (h *handlers) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				h.fail(w, r, fmt.Errorf("panic: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// schemed returns the scheme and value of an Authorization header of one
// of the schemes the service knows: "Bearer <JWT>" or "AWS-IAM <signed
// request>", the scheme's name compared without case.
func schemed(r *http.Request) (scheme, value string, ok bool) {
	a := r.Header.Get("Authorization")
	for _, scheme := range [...]string{wire.SchemeBearer, wire.SchemeAWSIAM} {
		if len(a) > len(scheme)+1 && a[len(scheme)] == ' ' && strings.EqualFold(a[:len(scheme)], scheme) {
			return scheme, strings.TrimSpace(a[len(scheme)+1:]), true
		}
	}
	return "", "", false
}

// decodeBody reads an optional JSON object of at most MaxBodyBytes into v,
// refusing unknown fields and trailing data.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return errTooLarge
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errBadBody, err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", errBadBody, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON object", errBadBody)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
