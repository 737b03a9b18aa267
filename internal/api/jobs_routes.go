package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/apiauth"
	"github.com/kanade-project/kanade/internal/jobs"
	"github.com/kanade-project/kanade/internal/store"
	"github.com/kanade-project/kanade/internal/wire"
)

// Jobs is the job catalog and executor the job endpoints use; nil disables
// them.
type Jobs struct {
	Catalog  *jobs.Catalog
	Executor *jobs.Executor
}

func (s *Server) jobRoutes() {
	if s.d.Jobs == nil {
		return
	}
	s.handle("GET /api/jobs", viewer, s.listJobs)
	s.handle("GET /api/jobs/{job}", viewer, s.getJob)
	s.handle("POST /api/jobs", operator, s.putJob)
	s.handle("DELETE /api/jobs/{job}", operator, s.deleteJob)
	s.handle("POST /api/exec", operator, s.startExec)
	s.handle("GET /api/exec/{exec_id}", viewer, s.getExec)
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	list, err := s.d.Jobs.Catalog.List(r.Context())
	if err != nil {
		return err
	}
	list = orEmpty(list)
	writeJSON(w, http.StatusOK, map[string]any{"jobs": list})
	return nil
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	id, err := pathToken(r, "job")
	if err != nil {
		return err
	}
	e, err := s.d.Jobs.Catalog.Get(r.Context(), id)
	if err != nil {
		return errf(http.StatusNotFound, "unknown_job", "%v", err)
	}
	status, err := s.scriptStatus(r.Context(), id)
	if err != nil {
		return err
	}
	// The entry's own fields stay where they were (Manifest, Revision,
	// YAML); script_status sits beside them.
	writeJSON(w, http.StatusOK, struct {
		jobs.Entry
		ScriptStatus string `json:"script_status"`
	}{e, status})
	return nil
}

// Script statuses as GET /api/jobs/{job} reports them.
const (
	scriptStatusActive  = "active"
	scriptStatusRevoked = "revoked"
)

// scriptStatus reads a job's revocation from KV script_status the way the
// agents' gate does (internal/agent/gates.go): revoked exactly when the
// value is wire.ScriptRevoked; no key, or any other value, runs.
func (s *Server) scriptStatus(ctx context.Context, job string) (string, error) {
	kv, err := s.d.JS.KeyValue(ctx, wire.BucketScriptStatus)
	if err != nil {
		return "", errf(http.StatusServiceUnavailable, "kv_unavailable", "%v", err)
	}
	e, err := kv.Get(ctx, job)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return scriptStatusActive, nil
	case err != nil:
		return "", errf(http.StatusServiceUnavailable, "kv_unavailable", "%s/%s: %v", wire.BucketScriptStatus, job, err)
	case string(e.Value()) == wire.ScriptRevoked:
		return scriptStatusRevoked, nil
	}
	return scriptStatusActive, nil
}

// putJob stores a YAML manifest (the request body). ?revision=N makes it
// compare-and-set against the revision the caller read (0: create).
func (s *Server) putJob(w http.ResponseWriter, r *http.Request, id apiauth.Identity) error {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, 1<<20))
	if err != nil {
		return errf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	m, err := jobs.ParseStrict(body, "")
	if err != nil {
		return errf(http.StatusBadRequest, "invalid_manifest", "%v", err)
	}
	rev, err := revisionParam(r)
	if err != nil {
		return err
	}
	if err := s.audit(r.Context(), id, "job_put", m.ID, map[string]any{"version": m.Version, "manifest": string(body)}); err != nil {
		return err
	}
	n, err := s.d.Jobs.Catalog.Put(r.Context(), m, rev)
	if jobs.IsCASConflict(err) {
		return errf(http.StatusConflict, "conflict", "job %s changed since revision %d; read it again", m.ID, rev)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": m.ID, "version": m.Version, "revision": n})
	return nil
}

func (s *Server) deleteJob(w http.ResponseWriter, r *http.Request, id apiauth.Identity) error {
	job, err := pathToken(r, "job")
	if err != nil {
		return err
	}
	rev, err := revisionParam(r)
	if err != nil {
		return err
	}
	if err := s.audit(r.Context(), id, "job_delete", job, nil); err != nil {
		return err
	}
	if err := s.d.Jobs.Catalog.Delete(r.Context(), job, rev); err != nil {
		if jobs.IsCASConflict(err) {
			return errf(http.StatusConflict, "conflict", "job %s changed since revision %d", job, rev)
		}
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": job, "deleted": true})
	return nil
}

func revisionParam(r *http.Request) (uint64, error) {
	v := r.URL.Query().Get("revision")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, errf(http.StatusBadRequest, "bad_request", "revision must be a non-negative integer")
	}
	return n, nil
}

// startExec runs a catalog job with a plan: {"job": "id", "plan": {...}}.
func (s *Server) startExec(w http.ResponseWriter, r *http.Request, id apiauth.Identity) error {
	var req struct {
		Job  string          `json:"job"`
		Plan json.RawMessage `json:"plan"`
	}
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	entry, err := s.d.Jobs.Catalog.Get(r.Context(), req.Job)
	if err != nil {
		return errf(http.StatusNotFound, "unknown_job", "job %q: %v", req.Job, err)
	}
	plan, err := jobs.ParsePlan(req.Plan)
	if err != nil {
		return errf(http.StatusBadRequest, "invalid_plan", "%v", err)
	}
	if err := s.audit(r.Context(), id, "exec", entry.Manifest.ID, map[string]any{"version": entry.Manifest.Version, "plan": string(req.Plan)}); err != nil {
		return err
	}
	x, err := s.d.Jobs.Executor.Start(r.Context(), entry.Manifest, plan)
	if err != nil {
		return errf(http.StatusBadRequest, "exec_failed", "%v", err)
	}
	writeJSON(w, http.StatusAccepted, x)
	return nil
}

func (s *Server) getExec(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	execID, err := pathToken(r, "exec_id")
	if err != nil {
		return err
	}
	x, err := s.d.Jobs.Executor.Get(r.Context(), execID)
	if err != nil {
		return errf(http.StatusNotFound, "unknown_execution", "%v", err)
	}
	out := map[string]any{"execution": x}
	if s.d.Store != nil {
		if c, err := s.d.Store.ExecutionCounters(r.Context(), execID); err == nil {
			out["counters"] = c
		}
		if pcs, err := s.d.Store.ExecutionPCs(r.Context(), execID); err == nil {
			out["pcs"] = pcs
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// StoreCounter implements jobs.ResultCounter over the projection.
type StoreCounter struct{ Store *store.Store }

// Counts returns results and failures of an execution so far.
func (c StoreCounter) Counts(ctx context.Context, execID string) (int, int, error) {
	k, err := c.Store.ExecutionCounters(ctx, execID)
	if err != nil {
		return 0, 0, err
	}
	return int(k.Results), int(k.Failed + k.Killed), nil
}
