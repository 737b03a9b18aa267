package api

import (
	"context"
	"net/http"
	"slices"

	"github.com/kanade-project/kanade/internal/apiauth"
	"github.com/kanade-project/kanade/internal/natsauth"
)

// Credentials manages the agents' NATS credentials ([nats] auth = "nkeys");
// the server implements it. Only public keys are stored: Enroll mints a key
// pair and returns the seed once.
type Credentials interface {
	// Enroll mints a key for pc (replacing its earlier one) and applies it
	// to the embedded broker, or reports what to add to an external one.
	Enroll(ctx context.Context, pc string) (Issued, error)
	// Revoke removes pc's key; ok is false when pc was not enrolled.
	Revoke(ctx context.Context, pc string) (e natsauth.Enrollment, applied Applied, ok bool, err error)
	// List returns the enrolled agents sorted by pc_id.
	List(ctx context.Context) ([]natsauth.Enrollment, error)
	// Config renders the authorization block granting every known user
	// its role, for the nats-server configuration of an external cluster.
	Config(ctx context.Context) (string, error)
}

// Applied says whether a change is in force: on the embedded broker it is
// at once; an external cluster's configuration is the operator's to edit.
type Applied struct {
	// Live is true when the broker already enforces the change.
	Live bool `json:"live"`
	// Instructions tell the operator what is left to do (external cluster).
	Instructions string `json:"instructions,omitempty"`
}

// Issued is a fresh agent credential.
type Issued struct {
	natsauth.Enrollment
	// Seed is the agent's private NKey. It is returned once and kept
	// nowhere on the server.
	Seed string `json:"seed"`
	// Replaced is true when pc had a key, now revoked.
	Replaced bool    `json:"replaced"`
	Applied  Applied `json:"applied"`
}

// credentialRoutes: admin only, every change audited (without the seed).
func (s *Server) credentialRoutes() {
	s.handle("POST /api/agents/{pc}/credentials", admin, s.enrollAgent)
	s.handle("DELETE /api/agents/{pc}/credentials", admin, s.revokeAgent)
	s.handle("GET /api/nats/credentials", admin, s.listCredentials)
	s.handle("GET /api/nats/config", admin, s.natsConfig)
}

func (s *Server) credentials() (Credentials, error) {
	if s.d.Credentials == nil {
		return nil, errf(http.StatusConflict, "nats_auth_token",
			`this server runs with [nats] auth = "token": every client shares one secret and there are no per-agent credentials; set auth = "nkeys" in the [nats] table of server.toml and restart the server`)
	}
	return s.d.Credentials, nil
}

func (s *Server) enrollAgent(w http.ResponseWriter, r *http.Request, id apiauth.Identity) error {
	pc, err := pathToken(r, "pc")
	if err != nil {
		return err
	}
	c, err := s.credentials()
	if err != nil {
		return err
	}
	// Audited first: a credential that exists must have a record of who
	// asked for it. The public key is not known yet; the seed never is.
	if err := s.audit(r.Context(), id, "enroll_agent", pc, nil); err != nil {
		return err
	}
	iss, err := c.Enroll(r.Context(), pc)
	if err != nil {
		return errf(http.StatusServiceUnavailable, "enroll_failed", "%v", err)
	}
	s.d.Logger.Info("agent enrolled", "pc_id", pc, "public_key", iss.PublicKey, "replaced", iss.Replaced, "live", iss.Applied.Live, "actor", id.Actor)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, iss)
	return nil
}

func (s *Server) revokeAgent(w http.ResponseWriter, r *http.Request, id apiauth.Identity) error {
	pc, err := pathToken(r, "pc")
	if err != nil {
		return err
	}
	c, err := s.credentials()
	if err != nil {
		return err
	}
	list, err := c.List(r.Context())
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(list, func(e natsauth.Enrollment) bool { return e.PC == pc }) {
		return errf(http.StatusNotFound, "not_enrolled", "agent %q is not enrolled (see GET /api/nats/credentials)", pc)
	}
	if err := s.audit(r.Context(), id, "revoke_agent", pc, nil); err != nil {
		return err
	}
	e, applied, ok, err := c.Revoke(r.Context(), pc)
	if err != nil {
		return errf(http.StatusServiceUnavailable, "revoke_failed", "%v", err)
	}
	if !ok {
		return errf(http.StatusNotFound, "not_enrolled", "agent %q is not enrolled (see GET /api/nats/credentials)", pc)
	}
	s.d.Logger.Info("agent credential revoked", "pc_id", pc, "public_key", e.PublicKey, "live", applied.Live, "actor", id.Actor)
	writeJSON(w, http.StatusOK, map[string]any{"pc_id": pc, "public_key": e.PublicKey, "revoked": true, "applied": applied})
	return nil
}

func (s *Server) listCredentials(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	c, err := s.credentials()
	if err != nil {
		return err
	}
	list, err := c.List(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"agents": orEmpty(list)})
	return nil
}

func (s *Server) natsConfig(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	c, err := s.credentials()
	if err != nil {
		return err
	}
	text, err := c.Config(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(text))
	return nil
}
