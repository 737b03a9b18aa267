package api

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

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
	f := store.AgentFilter{Query: q.Get("q"), Version: q.Get("version"), OS: q.Get("os"), Group: q.Get("group"),
		CommandSigning: q.Get("command_signing"), Sort: q.Get("sort"), Limit: limit, Offset: offset}
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
	agents = orEmpty(agents)
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
	res = orEmpty(res)
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
	pcs = orEmpty(pcs)
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

// timelineParams and auditParams are the query parameters GET /api/timeline
// and GET /api/audit know. Anything else is refused, as GET /api/inventory
// does: a misspelt "acton=kill" would otherwise answer with every entry,
// which looks like an answer.
var (
	timelineParams = []string{"pc", "kind", "limit", "before"}
	auditParams    = []string{"action", "target", "actor", "limit", "before"}
)

// checkParams refuses query parameters outside known, and any given twice
// (which one would count is not obvious to the caller).
func checkParams(r *http.Request, known []string) error {
	q := r.URL.Query()
	var unknown []string
	for k, vs := range q {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
			continue
		}
		if len(vs) > 1 {
			return errf(http.StatusBadRequest, "bad_request", "%s is given %d times; give it once", k, len(vs))
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return errf(http.StatusBadRequest, "bad_request", "unknown query parameter(s) %s (known: %s)",
			strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	return nil
}

// exactParam reads a filter matched exactly against a stored column. Any
// value that fits the column is allowed (audit targets are scope keys,
// exec ids, PC ids...), but not one no row can hold.
func exactParam(r *http.Request, name string) (string, error) {
	v := r.URL.Query().Get(name)
	if len(v) > 256 || !utf8.ValidString(v) {
		return "", errf(http.StatusBadRequest, "bad_request", "%s must be at most 256 bytes of UTF-8", name)
	}
	return v, nil
}

// timeline answers ?pc=&kind=&limit=&before=: events newest first, limit
// 100 by default and 1,000 at most; before is the next of the previous
// page, an opaque cursor ("" on the last page).
func (s *Server) timeline(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	if err := checkParams(r, timelineParams); err != nil {
		return err
	}
	limit, err := queryInt(r, "limit", 100, 1000)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if pc := q.Get("pc"); pc != "" && !wire.ValidToken(pc) {
		return errf(http.StatusBadRequest, "bad_request", "pc %q is not a valid pc_id", pc)
	}
	kind, err := exactParam(r, "kind")
	if err != nil {
		return err
	}
	page, err := s.d.Store.ListTimeline(r.Context(), store.TimelineFilter{PCID: q.Get("pc"), Kind: kind, Limit: limit, Cursor: q.Get("before")})
	if errors.Is(err, store.ErrInvalid) {
		msg, _ := strings.CutPrefix(err.Error(), store.ErrInvalid.Error()+": ")
		return errf(http.StatusBadRequest, "bad_request", "before: %s", msg)
	}
	if err != nil {
		return err
	}
	evs := page.Events
	evs = orEmpty(evs)
	writeJSON(w, http.StatusOK, map[string]any{"events": evs, "next": page.Next})
	return nil
}

// auditList answers ?action=&target=&actor=&limit=&before=: entries newest
// first (by seq), the filters matching exactly, limit 100 by default and
// 1,000 at most. before is a seq: entries older than it; next is the seq
// to pass as before for the following page, as a string like the other
// cursors of the API ("" on the last page).
func (s *Server) auditList(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	if err := checkParams(r, auditParams); err != nil {
		return err
	}
	limit, err := queryInt(r, "limit", 100, 1000)
	if err != nil {
		return err
	}
	f := store.AuditFilter{Limit: limit}
	for _, p := range []struct {
		name string
		dst  *string
	}{{"action", &f.Action}, {"target", &f.Target}, {"actor", &f.Actor}} {
		if *p.dst, err = exactParam(r, p.name); err != nil {
			return err
		}
	}
	if b := r.URL.Query().Get("before"); b != "" {
		n, err := strconv.ParseUint(b, 10, 64)
		if err != nil || n == 0 {
			return errf(http.StatusBadRequest, "bad_request", "before must be an audit seq (a positive integer), the next of the previous page")
		}
		f.Before = n
	}
	page, err := s.d.Store.ListAudit(r.Context(), f)
	if err != nil {
		return err
	}
	list := page.Entries
	list = orEmpty(list)
	next := ""
	if page.Next > 0 {
		next = strconv.FormatUint(page.Next, 10)
	}
	writeJSON(w, http.StatusOK, map[string]any{"audit": list, "next": next})
	return nil
}

// fleetHealth answers the agents online, offline and stale (offline, no
// heartbeat for 7 days), per OS and per version, and the broker
// connection: the overview in one request.
func (s *Server) fleetHealth(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	h, err := s.d.Store.FleetHealth(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"online": h.Online, "offline": h.Offline, "stale": h.Stale, "total": h.Online + h.Offline,
		"by_os": h.ByOS, "by_version": h.ByVersion, "nats": s.d.NC.Status().String()})
	return nil
}
