package api

import (
	"io"
	"net/http"

	"github.com/kanade-project/kanade/internal/apiauth"
	"github.com/kanade-project/kanade/internal/jobs"
	"github.com/kanade-project/kanade/internal/scheduler"
)

func (s *Server) scheduleRoutes() {
	if s.d.Schedules == nil {
		return
	}
	s.handle("GET /api/schedules", viewer, s.listSchedules)
	s.handle("GET /api/schedules/{id}", viewer, s.getSchedule)
	s.handle("POST /api/schedules", operator, s.putSchedule)
	s.handle("POST /api/schedules/{id}/enable", operator, s.enableSchedule(true))
	s.handle("POST /api/schedules/{id}/disable", operator, s.enableSchedule(false))
	s.handle("DELETE /api/schedules/{id}", operator, s.deleteSchedule)
}

func (s *Server) listSchedules(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	list, err := s.d.Schedules.List(r.Context())
	if err != nil {
		return err
	}
	list = orEmpty(list)
	writeJSON(w, http.StatusOK, map[string]any{"schedules": list})
	return nil
}

func (s *Server) getSchedule(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	id, err := pathToken(r, "id")
	if err != nil {
		return err
	}
	e, err := s.d.Schedules.Get(r.Context(), id)
	if err != nil {
		return errf(http.StatusNotFound, "unknown_schedule", "%v", err)
	}
	writeJSON(w, http.StatusOK, e)
	return nil
}

// putSchedule stores a YAML schedule (the body), strictly validated;
// ?revision=N for compare-and-set.
func (s *Server) putSchedule(w http.ResponseWriter, r *http.Request, id apiauth.Identity) error {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, 1<<20))
	if err != nil {
		return errf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	sch, err := scheduler.ParseStrict(body)
	if err != nil {
		return errf(http.StatusBadRequest, "invalid_schedule", "%v", err)
	}
	rev, err := revisionParam(r)
	if err != nil {
		return err
	}
	if err := s.audit(r.Context(), id, "schedule_put", sch.ID, map[string]any{"schedule": string(body)}); err != nil {
		return err
	}
	n, err := s.d.Schedules.Put(r.Context(), sch, rev)
	if jobs.IsCASConflict(err) {
		return errf(http.StatusConflict, "conflict", "schedule %s changed since revision %d; read it again", sch.ID, rev)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": sch.ID, "revision": n})
	return nil
}

func (s *Server) enableSchedule(on bool) handler {
	return func(w http.ResponseWriter, r *http.Request, id apiauth.Identity) error {
		sid, err := pathToken(r, "id")
		if err != nil {
			return err
		}
		action := "schedule_disable"
		if on {
			action = "schedule_enable"
		}
		if err := s.audit(r.Context(), id, action, sid, nil); err != nil {
			return err
		}
		n, err := s.d.Schedules.SetEnabled(r.Context(), sid, on)
		if err != nil {
			return errf(http.StatusNotFound, "unknown_schedule", "%v", err)
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": sid, "enabled": on, "revision": n})
		return nil
	}
}

func (s *Server) deleteSchedule(w http.ResponseWriter, r *http.Request, id apiauth.Identity) error {
	sid, err := pathToken(r, "id")
	if err != nil {
		return err
	}
	rev, err := revisionParam(r)
	if err != nil {
		return err
	}
	if err := s.audit(r.Context(), id, "schedule_delete", sid, nil); err != nil {
		return err
	}
	if err := s.d.Schedules.Delete(r.Context(), sid, rev); err != nil {
		if jobs.IsCASConflict(err) {
			return errf(http.StatusConflict, "conflict", "schedule %s changed since revision %d", sid, rev)
		}
		return errf(http.StatusNotFound, "unknown_schedule", "%v", err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": sid, "deleted": true})
	return nil
}
