package api

import (
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/kanade-project/kanade/internal/apiauth"
)

// Browser sessions (the dashboard): POST /api/session trades a token for
// the session cookie, GET tells who the caller is, DELETE logs out. The
// cookie holds a session token signed by the server, never the presented
// token; see package apiauth for the CSRF rule that comes with it.
func (s *Server) sessionRoutes() {
	s.mux.HandleFunc("POST /api/session", s.login)
	s.handle("GET /api/session", viewer, s.whoami)
	s.mux.HandleFunc("DELETE /api/session", s.logout)
}

// sessionInfo answers every session endpoint.
type sessionInfo struct {
	Actor string `json:"actor"`
	Role  string `json:"role"`
	// AuthDisabled: the server runs with --dev; no login is needed.
	AuthDisabled bool `json:"auth_disabled"`
	// ExpiresAt is when the credential ends (the session, or a bearer
	// JWT); absent for the static token and in dev mode.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

func (s *Server) info(id apiauth.Identity) sessionInfo {
	return sessionInfo{Actor: id.Actor, Role: id.Role.String(), AuthDisabled: s.d.Auth.Disabled, ExpiresAt: id.ExpiresAt}
}

// login checks {"token": "..."} like a bearer token (same rate limit),
// audits the login, then sets the session cookie.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Token string `json:"token"`
	}
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	sess, err := s.d.Auth.Login(r, req.Token)
	if err != nil {
		if s.d.Logger != nil {
			s.d.Logger.Warn("login refused", "client", clientHost(r), "err", err)
		}
		if errors.Is(err, apiauth.ErrRateLimited) {
			writeError(w, errf(http.StatusTooManyRequests, "rate_limited", "%v", err))
		} else {
			writeError(w, errf(http.StatusUnauthorized, "unauthorized", "%v", err))
		}
		return
	}
	payload := map[string]any{"role": sess.Role.String(), "client": clientHost(r)}
	if !sess.ExpiresAt.IsZero() {
		payload["expires_at"] = sess.ExpiresAt
	}
	if err := s.audit(r.Context(), sess.Identity, "login", "", payload); err != nil {
		writeError(w, err)
		return
	}
	if sess.Token != "" { // dev mode needs no session
		http.SetCookie(w, s.d.Auth.NewSessionCookie(r, sess))
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, s.info(sess.Identity))
}

func (s *Server) whoami(w http.ResponseWriter, _ *http.Request, id apiauth.Identity) error {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, s.info(id))
	return nil
}

// logout clears the cookie. An authenticated caller's logout is audited
// first (and refused, cookie kept, when the audit record cannot be
// stored); a caller whose session already ended or never existed just
// gets the cookie cleared. The session token itself stays valid until it
// expires: sessions are stateless, so a copy of the cookie taken before
// logout would still work.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	id, err := s.d.Auth.Authenticate(r)
	switch {
	case errors.Is(err, apiauth.ErrCSRF):
		writeError(w, errf(http.StatusForbidden, "csrf", "%v", err))
		return
	case err == nil:
		if err := s.audit(r.Context(), id, "logout", "", map[string]any{"client": clientHost(r)}); err != nil {
			writeError(w, err)
			return
		}
	}
	http.SetCookie(w, apiauth.ClearSessionCookie(r))
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"logged_out": true})
}

func clientHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
