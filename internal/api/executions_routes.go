package api

import (
	"errors"
	"net/http"

	"github.com/kanade-project/kanade/internal/apiauth"
	"github.com/kanade-project/kanade/internal/store"
)

// executionRoutes serves the executions list. Each item carries the same
// counters as GET /api/executions/{exec_id} (and the "counters" of
// GET /api/exec/{exec_id}), plus job_id, first_seen_at and last_result_at.
func (s *Server) executionRoutes() {
	if s.d.Store == nil {
		return
	}
	s.handle("GET /api/executions", viewer, s.listExecutions)
}

// listExecutions answers ?limit=&before=: newest first (by first_seen_at),
// limit 50 by default and 500 at most; before is the next of the previous
// page, an opaque cursor.
func (s *Server) listExecutions(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	limit, err := queryInt(r, "limit", 50, 500)
	if err != nil {
		return err
	}
	page, err := s.d.Store.ListExecutions(r.Context(), store.ExecutionFilter{Limit: limit, Cursor: r.URL.Query().Get("before")})
	if errors.Is(err, store.ErrInvalid) {
		return errf(http.StatusBadRequest, "bad_request", "before: %v", err)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"executions": page.Executions, "next": page.Next})
	return nil
}
