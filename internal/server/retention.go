package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/kanade-project/kanade/internal/api"
	"github.com/kanade-project/kanade/internal/serverconfig"
	"github.com/kanade-project/kanade/internal/store"
)

// retentionStartDelay is how long after start the first trim waits: long
// enough that start-up (bootstrap, a replay into a new database) is not
// slowed by it, short enough that a server restarted every night still
// trims.
const retentionStartDelay = time.Minute

// retainer deletes the rows of the projection's history tables that are
// older than the [retention] policy allows, on a timer. Deletions go in
// batches of BatchSize rows, one transaction each (store.TrimBatch), so
// the projectors, which share SQLite's single writer, commit between them.
type retainer struct {
	st     *store.Store
	log    *slog.Logger
	policy serverconfig.RetentionPolicy
	first  time.Duration
	now    func() time.Time

	// deleted and failed are per table, created once in newRetainer and
	// only read afterwards: the maps need no lock, the counters are atomic.
	deleted map[string]*atomic.Uint64
	failed  map[string]*atomic.Uint64
}

// newRetainer builds the loop for policy. every, when positive, replaces
// the policy's interval and the start delay (tests).
func newRetainer(st *store.Store, policy serverconfig.RetentionPolicy, log *slog.Logger, every time.Duration) *retainer {
	r := &retainer{st: st, log: log, policy: policy, first: retentionStartDelay, now: time.Now,
		deleted: map[string]*atomic.Uint64{}, failed: map[string]*atomic.Uint64{}}
	if every > 0 {
		r.policy.Interval, r.first = every, every
	}
	r.first = min(r.first, r.policy.Interval)
	for _, t := range store.TrimmableTables() {
		r.deleted[t], r.failed[t] = new(atomic.Uint64), new(atomic.Uint64)
	}
	return r
}

// run trims once after the start delay, then every interval, until ctx
// ends.
func (r *retainer) run(ctx context.Context) {
	var kept []string
	for _, t := range r.policy.Tables {
		if t.MaxAge > 0 {
			kept = append(kept, fmt.Sprintf("%s=%s", t.Table, t.MaxAge))
		} else {
			kept = append(kept, t.Table+"=forever")
		}
	}
	r.log.Info("retention scheduled", "first_in", r.first, "interval", r.policy.Interval, "batch_size", r.policy.BatchSize, "max_age", kept)
	timer := time.NewTimer(r.first)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		r.trimAll(ctx)
		timer.Reset(r.policy.Interval)
	}
}

// trimReport is what one pass did to one table.
type trimReport struct {
	Table   string
	Cutoff  time.Time
	Deleted int64
	Batches int
	Err     error
}

// trimAll trims every table with a maximum age once and logs what it
// deleted. A failing table is logged and counted; the others still run,
// and the next pass tries again.
func (r *retainer) trimAll(ctx context.Context) []trimReport {
	var out []trimReport
	for _, t := range r.policy.Tables {
		if t.MaxAge <= 0 {
			continue
		}
		start := time.Now()
		rep := r.trim(ctx, t.Table, r.now().Add(-t.MaxAge))
		out = append(out, rep)
		log := r.log.With("table", rep.Table, "max_age", t.MaxAge, "cutoff", rep.Cutoff, "deleted", rep.Deleted, "batches", rep.Batches, "took", time.Since(start).Round(time.Millisecond))
		switch {
		case rep.Err != nil && ctx.Err() != nil:
			return out // shutting down
		case rep.Err != nil:
			if c := r.failed[rep.Table]; c != nil {
				c.Add(1)
			}
			log.Warn("retention: trimming failed; retrying at the next pass", "err", rep.Err)
		case rep.Deleted > 0:
			log.Info("retention: deleted rows older than the cutoff")
		default:
			log.Debug("retention: nothing to delete")
		}
	}
	return out
}

// trim deletes table's rows older than cutoff, batch by batch, counting
// each batch as it commits: a long trim shows progress on /metrics, and an
// error keeps what was already deleted counted.
func (r *retainer) trim(ctx context.Context, table string, cutoff time.Time) trimReport {
	rep := trimReport{Table: table, Cutoff: cutoff}
	for {
		n, err := r.st.TrimBatch(ctx, table, cutoff, r.policy.BatchSize)
		if n > 0 {
			rep.Deleted += n
			rep.Batches++
			if c := r.deleted[table]; c != nil {
				c.Add(uint64(n))
			}
		}
		if err != nil {
			rep.Err = err
			return rep
		}
		if n < int64(r.policy.BatchSize) {
			return rep
		}
		if err := ctx.Err(); err != nil {
			rep.Err = err
			return rep
		}
	}
}

// writeMetrics adds the retention counters to /metrics, every trimmable
// table from the start (a series appearing only after the first deletion
// would hide from rate() the rows deleted by it).
func (r *retainer) writeMetrics(m *api.MetricsWriter) {
	for _, t := range store.TrimmableTables() {
		m.Counter("kanade_retention_deleted_rows_total", "Rows deleted from a projection table by retention ([retention] in server.toml).", float64(r.deleted[t].Load()), "table", t)
	}
	for _, t := range store.TrimmableTables() {
		m.Counter("kanade_retention_errors_total", "Retention passes that failed on a table (retried at the next pass).", float64(r.failed[t].Load()), "table", t)
	}
}
