package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/kanade-project/kanade/internal/wire"
)

// ExecutionSummary is one execution in the list: the same counters as
// ExecutionCounters, plus its job and when it was seen. The table behind it
// (executions, migration 00003) is kept by triggers on started and results
// (the started events and the running count) and by each write transaction
// (what results bring, foldExecution).
type ExecutionSummary struct {
	Counters
	// JobID is the job the agents reported (a manifest id, or
	// wire.AdhocJobID for an ad-hoc run); empty while nothing reported it.
	JobID string `json:"job_id"`
	// FirstSeenAt is the earliest start or finish reported by any PC (the
	// agents' clocks); zero when unknown.
	FirstSeenAt time.Time `json:"first_seen_at,omitzero"`
	// LastResultAt is the latest finish of a result; zero before the first.
	LastResultAt time.Time `json:"last_result_at,omitzero"`
}

// ExecutionFilter selects one page of executions, newest first.
type ExecutionFilter struct {
	// Limit defaults to 50 and is capped at 500.
	Limit int
	// Cursor is the Next of the previous page; empty for the first page.
	Cursor string
}

// ExecutionPage is one page of ListExecutions.
type ExecutionPage struct {
	Executions []ExecutionSummary
	// Next is the cursor of the following page; empty on the last page.
	Next string
}

// ListExecutions returns executions ordered by FirstSeenAt, newest first
// (exec_id breaks ties, descending), with keyset pagination: a page is one
// index range scan however deep it is. An execution appears as soon as
// one started event or result of it is projected. A malformed cursor is
// ErrInvalid.
func (s *Store) ListExecutions(ctx context.Context, f ExecutionFilter) (ExecutionPage, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 500)
	q := `SELECT e.exec_id, e.job_id, e.first_seen_at, e.last_result_at, e.running,
		coalesce(c.results, 0), coalesce(c.succeeded, 0), coalesce(c.failed, 0),
		coalesce(c.skipped, 0), coalesce(c.killed, 0)
		FROM executions e LEFT JOIN exec_counters c ON c.exec_id = e.exec_id`
	args := []any{}
	if f.Cursor != "" {
		at, id, err := decodeCursor("executions", f.Cursor)
		if err != nil {
			return ExecutionPage{}, err
		}
		q += ` WHERE (e.first_seen_at, e.exec_id) < (?, ?)`
		args = append(args, at, id)
	}
	// One row more than the page tells whether another page follows.
	q += ` ORDER BY e.first_seen_at DESC, e.exec_id DESC LIMIT ?`
	rows, err := s.r.QueryContext(ctx, q, append(args, limit+1)...)
	if err != nil {
		return ExecutionPage{}, err
	}
	defer rows.Close()
	page := ExecutionPage{Executions: make([]ExecutionSummary, 0, min(limit, 64))}
	var lastFirst int64
	for rows.Next() {
		var e ExecutionSummary
		var first int64
		var last sql.NullInt64
		if err := rows.Scan(&e.ExecID, &e.JobID, &first, &last, &e.Running,
			&e.Results, &e.Succeeded, &e.Failed, &e.Skipped, &e.Killed); err != nil {
			return ExecutionPage{}, err
		}
		if len(page.Executions) == limit {
			page.Next = encodeCursor(lastFirst, page.Executions[limit-1].ExecID)
			break
		}
		e.FirstSeenAt, e.LastResultAt = msTime(first), fromMS(last)
		lastFirst = first
		page.Executions = append(page.Executions, e)
	}
	return page, rows.Err()
}

// execFold is what the results of one transaction bring to their
// execution's row: written once per execution at commit, like the
// counters, instead of once per result.
type execFold struct {
	job         string // the smallest non-empty job id
	first, last int64  // Unix ms; 0 unknown
}

// minKnown is the smaller of two times where 0 means unknown.
func minKnown(a, b int64) int64 {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
}

// minJob is the smaller of two job ids where "" means unknown: a fold
// that does not depend on the order of the results.
func minJob(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return min(a, b)
}

// foldExecution notes a stored result (new, or a newer copy) for its
// execution's row; flushExecutions writes it. Every column is a fold that
// ignores order, so a rebuild from the streams gives the same rows.
func (t *Tx) foldExecution(r wire.ExecResult) {
	if t.execs == nil {
		t.execs = make(map[string]*execFold)
	}
	f := t.execs[r.ExecID]
	if f == nil {
		f = &execFold{}
		t.execs[r.ExecID] = f
	}
	fin := msz(r.FinishedAt)
	f.job = minJob(f.job, r.JobID)
	f.first = minKnown(f.first, minKnown(msz(r.StartedAt), fin))
	f.last = max(f.last, fin)
}

// foldExecutionSQL merges a fold into a row with the same rules as the
// started trigger of migration 00003 (0 and NULL are unknown); running is
// left to the triggers.
const foldExecutionSQL = `INSERT INTO executions (exec_id, job_id, first_seen_at, last_result_at)
	VALUES (?1, ?2, ?3, nullif(?4, 0))
	ON CONFLICT (exec_id) DO UPDATE SET
		job_id = CASE WHEN executions.job_id = '' THEN excluded.job_id
			WHEN excluded.job_id = '' THEN executions.job_id
			ELSE min(executions.job_id, excluded.job_id) END,
		first_seen_at = coalesce(min(nullif(executions.first_seen_at, 0), nullif(excluded.first_seen_at, 0)),
			nullif(executions.first_seen_at, 0), excluded.first_seen_at),
		last_result_at = max(coalesce(executions.last_result_at, excluded.last_result_at),
			coalesce(excluded.last_result_at, executions.last_result_at))`

// flushExecutions writes the folds of this transaction, one statement per
// execution.
func (t *Tx) flushExecutions() error {
	if len(t.execs) == 0 {
		return nil
	}
	st, err := t.tx.PrepareContext(t.ctx, foldExecutionSQL)
	if err != nil {
		return fmt.Errorf("store: executions: %w", err)
	}
	defer st.Close()
	for id, f := range t.execs {
		if _, err := st.ExecContext(t.ctx, id, f.job, f.first, f.last); err != nil {
			return fmt.Errorf("store: executions %s: %w", id, err)
		}
	}
	t.execs = nil
	return nil
}
