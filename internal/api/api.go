// Package api is the backend's HTTP JSON API under /api/, plus /healthz and
// /metrics. Every mutation is authorised by role and written to the AUDIT
// stream (actor, action, target, payload) before the response. Errors are
// JSON {"error": {"code": "...", "message": "..."}} with a stable code.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/apiauth"
	"github.com/kanade-project/kanade/internal/cmdsign"
	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/scheduler"
	"github.com/kanade-project/kanade/internal/store"
	"github.com/kanade-project/kanade/internal/wire"
)

// Deps are what the API needs; the server builds them.
type Deps struct {
	NC     *nats.Conn
	JS     jetstream.JetStream
	Auth   *apiauth.Authenticator
	Logger *slog.Logger
	// Store answers the read endpoints (the SQLite projection); nil
	// serves only the endpoints that need the broker alone.
	Store *store.Store
	// Jobs serves the job catalog and exec endpoints; nil disables them.
	Jobs *Jobs
	// Schedules serves the schedule endpoints; nil disables them.
	Schedules *scheduler.Store
	// Metrics adds backend figures to /metrics; nil for none.
	Metrics func(w *MetricsWriter)
	// CommandSigner signs the commands the API publishes (POST /api/run);
	// nil publishes them unsigned.
	CommandSigner *cmdsign.Signer
	// Credentials manages agent NATS credentials; nil when the broker
	// uses a shared token (the endpoints then say how to switch).
	Credentials Credentials
}

// Server is the HTTP handler.
type Server struct {
	d     Deps
	fleet *fleetclient.Client
	mux   *http.ServeMux
	lat   *latencies
}

// New builds the handler.
func New(d Deps) (*Server, error) {
	fc, err := fleetclient.New(d.NC)
	if err != nil {
		return nil, err
	}
	fc.Signer = d.CommandSigner
	s := &Server{d: d, fleet: fc, mux: http.NewServeMux(), lat: newLatencies()}
	s.routes()
	return s, nil
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, status: 200}
	s.mux.ServeHTTP(sw, r)
	_, pattern := s.mux.Handler(r)
	s.lat.observe(pattern, sw.status, time.Since(start))
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Flush lets server-sent events through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// apiError is a JSON error with a stable code.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errf(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{Status: http.StatusInternalServerError, Code: "internal", Message: err.Error()}
	}
	writeJSON(w, ae.Status, map[string]any{"error": ae})
}

// handler is an endpoint that needs at least role.
type handler func(w http.ResponseWriter, r *http.Request, id apiauth.Identity) error

func (s *Server) handle(pattern string, role apiauth.Role, h handler) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		id, err := s.d.Auth.Authenticate(r)
		switch {
		case errors.Is(err, apiauth.ErrRateLimited):
			writeError(w, errf(http.StatusTooManyRequests, "rate_limited", "%v", err))
			return
		case errors.Is(err, apiauth.ErrCSRF):
			writeError(w, errf(http.StatusForbidden, "csrf", "%v", err))
			return
		case err != nil:
			writeError(w, errf(http.StatusUnauthorized, "unauthorized", "%v", err))
			return
		case id.Role < role:
			writeError(w, errf(http.StatusForbidden, "forbidden", "%s %s needs role %s; %s has %s", r.Method, r.URL.Path, role, id.Actor, id.Role))
			return
		}
		if err := h(w, r, id); err != nil {
			writeError(w, err)
		}
	})
}

// audit writes one audit event to the AUDIT stream and waits for the
// acknowledgement: a mutation whose audit record is lost must not report
// success.
func (s *Server) audit(ctx context.Context, id apiauth.Identity, action, target string, payload any) error {
	ev := wire.AuditEvent{At: time.Now().UTC(), Actor: id.Actor, Action: action, Target: target}
	if payload != nil {
		b, err := json.Marshal(payload)
		if err != nil {
			return err
		}
		ev.Payload = b
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	subjTarget := ""
	if target != "" && wire.ValidToken(target) {
		subjTarget = target
	}
	actor := id.Actor
	if !wire.ValidToken(actor) {
		actor = "unknown"
	}
	if _, err := s.d.JS.Publish(ctx, wire.SubjectAudit(actor, action, subjTarget), b); err != nil {
		return errf(http.StatusServiceUnavailable, "audit_unavailable", "the audit record could not be stored (%v); the action was not confirmed", err)
	}
	return nil
}

// decodeJSON reads a strict JSON body (unknown fields rejected).
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 16<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errf(http.StatusBadRequest, "bad_request", "invalid JSON body: %v", err)
	}
	return nil
}

func pathToken(r *http.Request, name string) (string, error) {
	v := r.PathValue(name)
	if err := wire.CheckToken(name, v); err != nil {
		return "", errf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	return v, nil
}

func queryInt(r *http.Request, name string, def, maxV int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	var n int
	if _, err := fmt.Sscan(v, &n); err != nil || n < 0 {
		return 0, errf(http.StatusBadRequest, "bad_request", "%s must be a non-negative integer", name)
	}
	return min(n, maxV), nil
}

// orEmpty makes a nil list an empty one: clients (the dashboard, scripts
// with jq) iterate the field, and JSON null is not a list.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func trimLower(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
