package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/kanade-project/kanade/internal/apiauth"
	"github.com/kanade-project/kanade/internal/fleetconfig"
	"github.com/kanade-project/kanade/internal/rollout"
	"github.com/kanade-project/kanade/internal/store"
)

// rolloutRoutes serve agent releases and rollouts: the same listing,
// checks and compare-and-set writes as `kanade agent releases|current|
// rollout`, through internal/rollout. Writes follow configRoutes' roles
// (admin for the global layer, operator for a group or PC).
func (s *Server) rolloutRoutes() {
	s.handle("GET /api/releases", viewer, s.listReleases)
	s.handle("GET /api/rollout", viewer, s.getRollout)
	s.handle("PUT /api/rollout/{scope}", operator, s.putRollout)
	s.handle("DELETE /api/rollout/{scope}", operator, s.deleteRollout)
}

func (s *Server) listReleases(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	rows, err := rollout.ListReleases(r.Context(), s.d.JS)
	if err != nil {
		return errf(http.StatusServiceUnavailable, "releases_unavailable", "%v", err)
	}
	rows = orEmpty(rows)
	writeJSON(w, http.StatusOK, map[string]any{"releases": rows})
	return nil
}

// rolloutView is GET /api/rollout: where a target is set and, with the
// projection, what the fleet runs now.
type rolloutView struct {
	Targets []rollout.Target `json:"targets"`
	// Versions counts agents per reported agent_version (from the
	// projection's latest heartbeats), most common first; null when the
	// server has no projection ([] when it has no agents yet).
	Versions []store.VersionCount `json:"versions"`
}

func (s *Server) getRollout(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	kv, err := s.configKV(r)
	if err != nil {
		return err
	}
	targets, err := rollout.ReadTargets(r.Context(), kv)
	if err != nil {
		return err
	}
	view := rolloutView{Targets: targets}
	view.Targets = orEmpty(view.Targets)
	if s.d.Store != nil {
		if view.Versions, err = s.d.Store.VersionCounts(r.Context()); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, view)
	return nil
}

// putRolloutRequest sets target_version (and target_version_jitter when
// Jitter is given) in one layer. Revision, when given, is the revision of
// the layer the caller read (0: it did not exist) and the write is refused
// unless the layer is still there; without it the server edits the layer
// as it reads it, still compare-and-set, like the CLI.
type putRolloutRequest struct {
	Version  string  `json:"version"`
	Jitter   *string `json:"jitter"`
	Revision *uint64 `json:"revision"`
}

// rolloutResult answers PUT and DELETE /api/rollout/{scope}.
type rolloutResult struct {
	Key   string `json:"key"`
	Scope string `json:"scope"`
	// Written is false when the layer already said so (nothing changed,
	// no new revision, no audit record).
	Written bool `json:"written"`
	// Revision is the layer's revision now; PreviousRevision the one it
	// had (0: it did not exist).
	Revision         uint64           `json:"revision"`
	PreviousRevision uint64           `json:"previous_revision"`
	Changes          []rollout.Change `json:"changes"`
	// Warnings: platforms the version lacks, unsigned releases.
	Warnings []string `json:"warnings,omitempty"`
	// OverriddenBy are more specific layers with their own target: their
	// PCs do not follow this one.
	OverriddenBy []rollout.Target `json:"overridden_by,omitempty"`
}

// rolloutExpect reads the optional ?revision= of DELETE.
func rolloutExpect(r *http.Request) (*uint64, error) {
	if !r.URL.Query().Has("revision") {
		return nil, nil
	}
	n, err := strconv.ParseUint(r.URL.Query().Get("revision"), 10, 64)
	if err != nil {
		return nil, errf(http.StatusBadRequest, "bad_request", "revision must be a non-negative integer")
	}
	return &n, nil
}

// rolloutUpdateError maps rollout.Update's refusals.
func rolloutUpdateError(err error, key string) error {
	var le *rollout.LayerError
	if errors.As(err, &le) {
		return errf(http.StatusConflict, "bad_layer", "%v; replace it with PUT /api/config/scopes/%s or delete it", le, key)
	}
	return conflictError(err)
}

func (s *Server) putRollout(w http.ResponseWriter, r *http.Request, id apiauth.Identity) error {
	sc, err := scopeParam(r)
	if err != nil {
		return err
	}
	if err := checkScopeWrite(r, id, sc); err != nil {
		return err
	}
	var req putRolloutRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	set, err := rollout.Fields(req.Version, req.Jitter)
	if err != nil {
		return errf(http.StatusBadRequest, "bad_value", "%v; nothing written", err)
	}
	releases, err := rollout.ListReleases(r.Context(), s.d.JS)
	if err != nil {
		return errf(http.StatusServiceUnavailable, "releases_unavailable", "%v", err)
	}
	warnings, err := rollout.CheckVersion(req.Version, releases)
	var ue *rollout.UnknownReleaseError
	if errors.As(err, &ue) {
		return errf(http.StatusBadRequest, "unknown_release", "%v", err)
	}
	if err != nil {
		return err
	}
	kv, err := s.configKV(r)
	if err != nil {
		return err
	}
	key := sc.Key()
	res, err := rollout.Update(r.Context(), kv, key, rollout.Options{
		Expect: req.Revision,
		BeforeWrite: func(o rollout.Outcome) error {
			return s.audit(r.Context(), id, "rollout_set", key, map[string]any{"version": req.Version, "jitter": req.Jitter, "revision": o.Read.Revision, "changes": o.Changes})
		},
	}, func(m map[string]json.RawMessage) []rollout.Change { return rollout.Apply(m, set) })
	if err != nil {
		return rolloutUpdateError(err, key)
	}
	out := s.rolloutResult(r, sc, res)
	out.Warnings = warnings
	writeJSON(w, http.StatusOK, out)
	return nil
}

// deleteRollout stops a rollout at one layer: it removes target_version
// and target_version_jitter (like `kanade agent rollout --clear`), so the
// layer's PCs follow a less specific layer's target, or keep their
// version. A layer without a target is left alone (written: false).
func (s *Server) deleteRollout(w http.ResponseWriter, r *http.Request, id apiauth.Identity) error {
	sc, err := scopeParam(r)
	if err != nil {
		return err
	}
	if err := checkScopeWrite(r, id, sc); err != nil {
		return err
	}
	expect, err := rolloutExpect(r)
	if err != nil {
		return err
	}
	kv, err := s.configKV(r)
	if err != nil {
		return err
	}
	key := sc.Key()
	res, err := rollout.Update(r.Context(), kv, key, rollout.Options{
		Expect: expect,
		BeforeWrite: func(o rollout.Outcome) error {
			return s.audit(r.Context(), id, "rollout_clear", key, map[string]any{"revision": o.Read.Revision, "changes": o.Changes})
		},
	}, rollout.Clear)
	if err != nil {
		return rolloutUpdateError(err, key)
	}
	writeJSON(w, http.StatusOK, s.rolloutResult(r, sc, res))
	return nil
}

// rolloutResult describes an update. The overrides are advice read after
// the write: failing to read them does not fail the request.
func (s *Server) rolloutResult(r *http.Request, sc fleetconfig.Scope, res rollout.Outcome) rolloutResult {
	out := rolloutResult{Key: sc.Key(), Scope: sc.String(), Written: res.Written, Revision: res.Revision, PreviousRevision: res.Read.Revision, Changes: res.Changes}
	out.Changes = orEmpty(out.Changes)
	if _, set := res.Layer[rollout.FieldTarget]; !set {
		return out // no target here: nothing to override
	}
	kv, err := s.configKV(r)
	if err == nil {
		var rows []rollout.Target
		if rows, err = rollout.ReadTargets(r.Context(), kv); err == nil {
			out.OverriddenBy = rollout.Overrides(rows, sc.Key())
		}
	}
	if err != nil && s.d.Logger != nil {
		s.d.Logger.Warn("rollout: reading the overriding layers", "key", sc.Key(), "err", err)
	}
	return out
}
