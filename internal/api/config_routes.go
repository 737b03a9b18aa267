package api

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/apiauth"
	"github.com/kanade-project/kanade/internal/fleetconfig"
	"github.com/kanade-project/kanade/internal/kvcas"
	"github.com/kanade-project/kanade/internal/wire"
)

// configRoutes serves the layers of KV agent_config: the same reads and
// compare-and-set writes as `kanade config get|set|clear`, validated by
// the same fleetconfig code.
//
// Reads need a viewer. Writes to a group or PC layer need an operator;
// writes to the global layer need an admin, because one write there
// reaches every PC at once (a wrong heartbeat_interval or target_version
// hits the whole fleet), while canary-first changes go through groups.
// The rollout endpoints apply the same rule.
//
// It also registers the rollout endpoints (rollout_routes.go): a rollout
// is a write to the same layers, under the same rules.
func (s *Server) configRoutes() {
	s.handle("GET /api/config/scopes", viewer, s.listScopes)
	s.handle("GET /api/config/scopes/{scope}", viewer, s.getScope)
	s.handle("PUT /api/config/scopes/{scope}", operator, s.putScope)
	s.handle("DELETE /api/config/scopes/{scope}", operator, s.deleteScope)
	s.rolloutRoutes()
}

// scopeView is one layer as the API shows it.
type scopeView struct {
	// Key is the agent_config key and the {scope} of the URL: global,
	// groups.<g> or pcs.<pc>.
	Key  string `json:"key"`
	Kind string `json:"kind"`
	Name string `json:"name,omitempty"`
	// Values are the fields exactly as stored (null means unset).
	Values   map[string]json.RawMessage `json:"values"`
	Revision uint64                     `json:"revision"`
	// Raw is the stored value when it is not a JSON object (agents then
	// ignore the layer).
	Raw string `json:"raw,omitempty"`
	// Problems are the values agents cannot use.
	Problems []wire.ConfigProblem `json:"problems,omitempty"`
}

func newScopeView(sc fleetconfig.Scope, v kvcas.Value) scopeView {
	view := scopeView{Key: sc.Key(), Kind: sc.Kind, Name: sc.Name, Revision: v.Revision}
	var ok bool
	view.Values, view.Problems, ok = fleetconfig.Inspect(v.Key, v.Value)
	if !ok {
		view.Raw = string(v.Value)
	}
	return view
}

// scopeParam parses {scope} strictly: only a layer agents read.
func scopeParam(r *http.Request) (fleetconfig.Scope, error) {
	sc, err := fleetconfig.ParseScopeKey(r.PathValue("scope"))
	if err != nil {
		return sc, errf(http.StatusBadRequest, "bad_scope", "%v", err)
	}
	return sc, nil
}

// checkScopeWrite enforces the admin role for writes to the global layer
// (see configRoutes).
func checkScopeWrite(r *http.Request, id apiauth.Identity, sc fleetconfig.Scope) error {
	if sc.Kind == fleetconfig.ScopeGlobal && id.Role < admin {
		return errf(http.StatusForbidden, "forbidden", "%s %s writes the global layer, which reaches every PC: it needs role %s; %s has %s", r.Method, r.URL.Path, admin, id.Actor, id.Role)
	}
	return nil
}

func (s *Server) configKV(r *http.Request) (jetstream.KeyValue, error) {
	kv, err := s.d.JS.KeyValue(r.Context(), wire.BucketAgentConfig)
	if err != nil {
		return nil, errf(http.StatusServiceUnavailable, "kv_unavailable", "bucket %s: %v", wire.BucketAgentConfig, err)
	}
	return kv, nil
}

// conflictError maps a compare-and-set refusal to 409 conflict.
func conflictError(err error) error {
	var ce *kvcas.ConflictError
	if errors.As(err, &ce) {
		return errf(http.StatusConflict, "conflict", "%v; read it again", ce)
	}
	return err
}

// errSkipKey leaves a key out of a listing.
var errSkipKey = errors.New("skip")

// listScopes lists every layer agents read, global first, then groups,
// then PCs (each by name). Keys that are not a valid scope are left out:
// no agent reads them.
func (s *Server) listScopes(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	kv, err := s.configKV(r)
	if err != nil {
		return err
	}
	views, err := kvcas.ReadAll(r.Context(), kv, func(ctx context.Context, key string) (scopeView, error) {
		sc, err := fleetconfig.ParseScopeKey(key)
		if err != nil {
			return scopeView{}, errSkipKey
		}
		v, err := kvcas.Read(ctx, kv, key)
		if err != nil {
			return scopeView{}, err
		}
		if v.Revision == 0 {
			return scopeView{}, errSkipKey // deleted since it was listed
		}
		return newScopeView(sc, v), nil
	}, errSkipKey)
	if err != nil {
		return err
	}
	// ReadAll sorts by key; order by precedence like every other listing.
	slices.SortStableFunc(views, func(x, y scopeView) int {
		sx, _ := fleetconfig.ClassifyKey(x.Key)
		sy, _ := fleetconfig.ClassifyKey(y.Key)
		return sx.Rank() - sy.Rank()
	})
	views = orEmpty(views)
	writeJSON(w, http.StatusOK, map[string]any{"scopes": views})
	return nil
}

func (s *Server) getScope(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	sc, err := scopeParam(r)
	if err != nil {
		return err
	}
	kv, err := s.configKV(r)
	if err != nil {
		return err
	}
	v, err := kvcas.Read(r.Context(), kv, sc.Key())
	if err != nil {
		return err
	}
	if v.Revision == 0 {
		return errf(http.StatusNotFound, "unknown_scope", "%s/%s is not set", wire.BucketAgentConfig, sc.Key())
	}
	writeJSON(w, http.StatusOK, newScopeView(sc, v))
	return nil
}

// putScopeRequest replaces one layer. Revision is the revision the caller
// read (0: the layer must not exist yet); it is required so that a client
// cannot overwrite a layer it never saw.
type putScopeRequest struct {
	Values   map[string]json.RawMessage `json:"values"`
	Revision *uint64                    `json:"revision"`
}

// validateValues checks every field as `kanade config set` does and
// returns the canonical values to store. Fields are checked in name order
// so the error is stable.
func validateValues(in map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(in))
	names := slices.Sorted(maps.Keys(in))
	for _, name := range names {
		raw, err := fleetconfig.ValidateValue(name, in[name])
		if err != nil {
			code := "bad_value"
			if _, known := fleetconfig.FieldByName(name); !known {
				code = "unknown_field"
			}
			return nil, errf(http.StatusBadRequest, code, "%v; nothing written", err)
		}
		out[name] = raw
	}
	return out, nil
}

// sameLayer reports whether a stored layer already holds exactly values.
func sameLayer(stored []byte, values map[string]json.RawMessage) bool {
	cur, err := fleetconfig.DecodeEditable(stored)
	if err != nil || len(cur) != len(values) {
		return false
	}
	for k, v := range values {
		if c, ok := cur[k]; !ok || !fleetconfig.SameValue(c, v) {
			return false
		}
	}
	return true
}

// putScope replaces a layer with compare-and-set. A layer that already
// holds exactly these values is not written again (written: false).
func (s *Server) putScope(w http.ResponseWriter, r *http.Request, id apiauth.Identity) error {
	sc, err := scopeParam(r)
	if err != nil {
		return err
	}
	if err := checkScopeWrite(r, id, sc); err != nil {
		return err
	}
	var req putScopeRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	switch {
	case req.Values == nil:
		return errf(http.StatusBadRequest, "bad_request", "values is required: the fields of the layer ({} for an empty layer; DELETE removes it)")
	case req.Revision == nil:
		return errf(http.StatusBadRequest, "bad_request", "revision is required: the revision you read (0 to create the layer)")
	}
	values, err := validateValues(req.Values)
	if err != nil {
		return err
	}
	kv, err := s.configKV(r)
	if err != nil {
		return err
	}
	key := sc.Key()
	// Refuse a stale revision before auditing: a write that cannot happen
	// leaves no record. kvcas.Put checks again, atomically.
	cur, err := kvcas.Read(r.Context(), kv, key)
	if err != nil {
		return err
	}
	if cur.Revision != *req.Revision {
		return conflictError(&kvcas.ConflictError{Bucket: wire.BucketAgentConfig, Key: key, Read: *req.Revision})
	}
	if cur.Revision > 0 && sameLayer(cur.Value, values) {
		writeJSON(w, http.StatusOK, struct {
			scopeView
			Written bool `json:"written"`
		}{newScopeView(sc, cur), false})
		return nil
	}
	value, err := json.Marshal(values)
	if err != nil {
		return err
	}
	if err := s.audit(r.Context(), id, "config_put", key, map[string]any{"values": values, "revision": cur.Revision}); err != nil {
		return err
	}
	rev, err := kvcas.Put(r.Context(), kv, key, value, cur.Revision)
	if err != nil {
		return conflictError(err)
	}
	writeJSON(w, http.StatusOK, struct {
		scopeView
		Written bool `json:"written"`
	}{newScopeView(sc, kvcas.Value{Key: key, Value: value, Revision: rev}), true})
	return nil
}

// deleteScope deletes a layer; ?revision= (required) is the revision the
// caller read.
func (s *Server) deleteScope(w http.ResponseWriter, r *http.Request, id apiauth.Identity) error {
	sc, err := scopeParam(r)
	if err != nil {
		return err
	}
	if err := checkScopeWrite(r, id, sc); err != nil {
		return err
	}
	rev, err := strconv.ParseUint(r.URL.Query().Get("revision"), 10, 64)
	if err != nil || rev == 0 {
		return errf(http.StatusBadRequest, "bad_request", "?revision= is required: the revision you read (a positive integer)")
	}
	kv, err := s.configKV(r)
	if err != nil {
		return err
	}
	key := sc.Key()
	cur, err := kvcas.Read(r.Context(), kv, key)
	if err != nil {
		return err
	}
	if cur.Revision == 0 {
		return errf(http.StatusNotFound, "unknown_scope", "%s/%s is not set; nothing deleted", wire.BucketAgentConfig, key)
	}
	if cur.Revision != rev {
		return conflictError(&kvcas.ConflictError{Bucket: wire.BucketAgentConfig, Key: key, Read: rev})
	}
	if err := s.audit(r.Context(), id, "config_delete", key, map[string]any{"revision": rev, "was": string(cur.Value)}); err != nil {
		return err
	}
	if err := kvcas.Delete(r.Context(), kv, key, rev); err != nil {
		return conflictError(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"key": key, "deleted": true, "revision": rev})
	return nil
}
