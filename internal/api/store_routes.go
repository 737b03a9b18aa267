package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/kanade-project/kanade/internal/apiauth"
	"github.com/kanade-project/kanade/internal/store"
	"github.com/kanade-project/kanade/internal/wire"
)

func (s *Server) storeRoutes() {
	if s.d.Store == nil {
		return
	}
	s.handle("GET /api/agents", viewer, s.listAgents)
	s.handle("GET /api/agents/{pc}", viewer, s.getAgent)
	s.handle("GET /api/results", viewer, s.listResults)
	s.handle("GET /api/executions/{exec_id}", viewer, s.getExecution)
	s.handle("GET /api/inventory", viewer, s.searchInventory)
	s.handle("GET /api/inventory/{pc}", viewer, s.inventory)
	s.handle("GET /api/timeline", viewer, s.timeline)
	s.handle("GET /api/audit", viewer, s.auditList)
	s.handle("GET /api/health/fleet", viewer, s.fleetHealth)
}

func (s *Server) listAgents(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	q := r.URL.Query()
	limit, err := queryInt(r, "limit", 100, 10_000)
	if err != nil {
		return err
	}
	offset, err := queryInt(r, "offset", 0, 1<<30)
	if err != nil {
		return err
	}
	f := store.AgentFilter{Query: q.Get("q"), Version: q.Get("version"), OS: q.Get("os"), Group: q.Get("group"), Sort: q.Get("sort"), Limit: limit, Offset: offset}
	switch trimLower(q.Get("online")) {
	case "":
	case "true", "1", "yes":
		v := true
		f.Online = &v
	case "false", "0", "no":
		v := false
		f.Online = &v
	default:
		return errf(http.StatusBadRequest, "bad_request", "online must be true or false")
	}
	agents, total, err := s.d.Store.ListAgents(r.Context(), f)
	if errors.Is(err, store.ErrInvalid) {
		return errf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	if err != nil {
		return err
	}
	if agents == nil {
		agents = []store.Agent{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"agents": agents, "total": total, "limit": f.Limit, "offset": f.Offset})
	return nil
}

func (s *Server) getAgent(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	pc, err := pathToken(r, "pc")
	if err != nil {
		return err
	}
	a, err := s.d.Store.GetAgent(r.Context(), pc)
	if errors.Is(err, store.ErrNotFound) {
		return errf(http.StatusNotFound, "unknown_pc", "no agent %q has ever sent a heartbeat", pc)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

func (s *Server) listResults(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	q := r.URL.Query()
	limit, err := queryInt(r, "limit", 100, 1000)
	if err != nil {
		return err
	}
	f := store.ResultFilter{ExecID: q.Get("exec_id"), PCID: q.Get("pc"), Limit: limit, BeforeID: q.Get("before_id")}
	if b := q.Get("before"); b != "" {
		t, err := time.Parse(time.RFC3339Nano, b)
		if err != nil {
			return errf(http.StatusBadRequest, "bad_request", "before must be an RFC 3339 time")
		}
		f.Before = t
	}
	res, err := s.d.Store.ListResults(r.Context(), f)
	if err != nil {
		return err
	}
	if res == nil {
		res = []store.Result{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": res})
	return nil
}

func (s *Server) getExecution(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	execID, err := pathToken(r, "exec_id")
	if err != nil {
		return err
	}
	c, err := s.d.Store.ExecutionCounters(r.Context(), execID)
	if err != nil {
		return err
	}
	pcs, err := s.d.Store.ExecutionPCs(r.Context(), execID)
	if err != nil {
		return err
	}
	if pcs == nil {
		pcs = []store.PCState{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"exec_id": execID, "counters": c, "pcs": pcs})
	return nil
}

func (s *Server) inventory(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	pc, err := pathToken(r, "pc")
	if err != nil {
		return err
	}
	secs, err := s.d.Store.InventoryLatest(r.Context(), pc)
	if err != nil {
		return err
	}
	if len(secs) == 0 {
		return errf(http.StatusNotFound, "no_inventory", "no inventory from %q yet", pc)
	}
	writeJSON(w, http.StatusOK, map[string]any{"pc_id": pc, "sections": secs})
	return nil
}

func (s *Server) timeline(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	limit, err := queryInt(r, "limit", 100, 1000)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if pc := q.Get("pc"); pc != "" && !wire.ValidToken(pc) {
		return errf(http.StatusBadRequest, "bad_request", "pc %q is not a valid pc_id", pc)
	}
	evs, err := s.d.Store.Timeline(r.Context(), store.TimelineFilter{PCID: q.Get("pc"), Kind: q.Get("kind"), Limit: limit})
	if err != nil {
		return err
	}
	if evs == nil {
		evs = []store.TimelineEvent{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs})
	return nil
}

func (s *Server) auditList(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	limit, err := queryInt(r, "limit", 100, 1000)
	if err != nil {
		return err
	}
	list, err := s.d.Store.AuditList(r.Context(), limit)
	if err != nil {
		return err
	}
	if list == nil {
		list = []store.AuditEntry{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"audit": list})
	return nil
}

func (s *Server) fleetHealth(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	online, offline, err := s.d.Store.AgentCounts(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"online": online, "offline": offline, "total": online + offline, "nats": s.d.NC.Status().String()})
	return nil
}
