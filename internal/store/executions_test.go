package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/kanade-project/kanade/internal/wire"
)

func TestListExecutionsNewestFirstWithKeysetPages(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	// ten executions; e3 and e4 share their first time (exec_id breaks the
	// tie, descending); e9 has only a started event so far.
	mustTx(t, s, func(tx *Tx) error {
		for i := range 9 {
			at := t0.Add(time.Duration(i) * time.Minute)
			if i == 4 {
				at = t0.Add(3 * time.Minute)
			}
			r := wire.ExecResult{ResultID: fmt.Sprint("r", i), ExecID: fmt.Sprint("e", i), JobID: "patch", PCID: "pc1",
				StartedAt: at, FinishedAt: at.Add(time.Second)}
			if err := tx.UpsertResult(r, uint64(i+1)); err != nil {
				return err
			}
		}
		return tx.AddStarted(wire.EventStarted{ResultID: "r9", ExecID: "e9", JobID: "long-job", PCID: "pc1", StartedAt: t0.Add(time.Hour)})
	})
	want := []string{"e9", "e8", "e7", "e6", "e5", "e4", "e3", "e2", "e1", "e0"}
	for _, limit := range []int{1, 3, 4, 10, 50} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			var got []string
			cursor := ""
			for pages := 0; ; pages++ {
				if pages > len(want) {
					t.Fatalf("more pages than executions: %v", got)
				}
				p, err := s.ListExecutions(ctx, ExecutionFilter{Limit: limit, Cursor: cursor})
				if err != nil {
					t.Fatal(err)
				}
				if len(p.Executions) > limit {
					t.Fatalf("page of %d rows with limit %d", len(p.Executions), limit)
				}
				for _, e := range p.Executions {
					got = append(got, e.ExecID)
				}
				if p.Next == "" {
					break
				}
				cursor = p.Next
			}
			if !slices.Equal(got, want) {
				t.Fatalf("executions = %v, want %v", got, want)
			}
		})
	}

	p, err := s.ListExecutions(ctx, ExecutionFilter{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	running, done := p.Executions[0], p.Executions[1]
	if running.JobID != "long-job" || running.Running != 1 || running.Results != 0 || !running.FirstSeenAt.Equal(t0.Add(time.Hour)) || !running.LastResultAt.IsZero() {
		t.Errorf("started-only execution = %+v", running)
	}
	if done.JobID != "patch" || done.Results != 1 || done.Succeeded != 1 || done.Running != 0 ||
		!done.FirstSeenAt.Equal(t0.Add(8*time.Minute)) || !done.LastResultAt.Equal(t0.Add(8*time.Minute+time.Second)) {
		t.Errorf("finished execution = %+v", done)
	}

	for _, bad := range []string{"!!", "bm8tY29sb24", "eDpl"} { // not base64; "no-colon"; "x:e"
		if _, err := s.ListExecutions(ctx, ExecutionFilter{Cursor: bad}); !errors.Is(err, ErrInvalid) {
			t.Errorf("cursor %q: %v, want ErrInvalid", bad, err)
		}
	}
}

// op is one projected message: a result (with its RESULTS sequence) or a
// started event.
type op struct {
	result  *wire.ExecResult
	seq     uint64
	started *wire.EventStarted
}

func (o op) apply(tx *Tx) error {
	if o.result != nil {
		return tx.UpsertResult(*o.result, o.seq)
	}
	return tx.AddStarted(*o.started)
}

// executionOps builds the two streams of a small fleet's history: every
// kind of result, started events before and after their results,
// duplicates, a newer copy of a result, results without a started event
// and started events without a result.
func executionOps() (results, events []op) {
	seq := uint64(0)
	addResult := func(r wire.ExecResult) {
		seq++
		results = append(results, op{result: &r, seq: seq})
	}
	addStarted := func(e wire.EventStarted) { events = append(events, op{started: &e}) }
	for e := range 6 {
		exec := fmt.Sprint("exec-", e)
		job := []string{"patch", wire.AdhocJobID, "inventory"}[e%3]
		for pc := range 12 {
			id := fmt.Sprintf("%s-pc%02d", exec, pc)
			at := t0.Add(time.Duration(e)*time.Hour + time.Duration(pc)*time.Second)
			if pc%4 != 3 { // every fourth PC sends no started event (a skip)
				addStarted(wire.EventStarted{ResultID: id, ExecID: exec, JobID: job, PCID: fmt.Sprint("pc", pc), StartedAt: at})
			}
			if pc%5 == 4 {
				continue // still running
			}
			// The result's own start is a little earlier than the started
			// event's: the agent takes its time before it publishes.
			r := wire.ExecResult{ResultID: id, ExecID: exec, JobID: job, PCID: fmt.Sprint("pc", pc), ExitCode: pc % 3,
				StartedAt: at.Add(-500 * time.Millisecond), FinishedAt: at.Add(time.Duration(pc) * time.Minute)}
			if e == 4 && pc == 6 {
				r.JobID = "aaa-renamed" // disagrees with the others: the smallest wins
			}
			switch pc % 4 {
			case 3:
				r.Skipped, r.ExitCode, r.StartedAt = true, wire.ExitRevoked, time.Time{}
			case 2:
				r.ExitCode, r.TimedOut = wire.ExitKilled, pc%8 == 2
			}
			addResult(r)
			if pc == 7 {
				addResult(r) // republished by the agent
			}
			if pc == 5 {
				r2 := r // a newer copy, another outcome and a later finish
				r2.ExitCode, r2.FinishedAt = 0, r.FinishedAt.Add(time.Hour)
				addResult(r2)
			}
		}
	}
	// A started event with a clock far behind (the first time is the
	// earliest clock) and a job id that disagrees with the results (the
	// smallest wins, whatever the order).
	addStarted(wire.EventStarted{ResultID: "exec-2-late", ExecID: "exec-2", JobID: "zz-other", PCID: "pc12", StartedAt: t0.Add(-24 * time.Hour)})
	addStarted(wire.EventStarted{ResultID: "exec-3-nojob", ExecID: "exec-3", PCID: "pc13", StartedAt: t0.Add(3 * time.Hour)})
	return results, events
}

// interleave merges the two streams randomly, keeping each stream's own
// order, as two projectors consuming RESULTS and EVENTS do.
func interleave(rng *rand.Rand, a, b []op) []op {
	out := make([]op, 0, len(a)+len(b))
	for len(a) > 0 || len(b) > 0 {
		if len(b) == 0 || (len(a) > 0 && rng.IntN(2) == 0) {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return out
}

// checkAgainstCounters compares every listed execution with what
// ExecutionCounters computes from the rows.
func checkAgainstCounters(t *testing.T, s *Store) []ExecutionSummary {
	t.Helper()
	ctx := context.Background()
	p, err := s.ListExecutions(ctx, ExecutionFilter{Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range p.Executions {
		c, err := s.ExecutionCounters(ctx, e.ExecID)
		if err != nil {
			t.Fatal(err)
		}
		if e.Counters != c {
			t.Errorf("%s: listed %+v, ExecutionCounters %+v", e.ExecID, e.Counters, c)
		}
	}
	return p.Executions
}

func TestExecutionsAreTheSameInAnyInterleaving(t *testing.T) {
	ctx := context.Background()
	results, events := executionOps()
	var first Fingerprint
	for i, order := range []struct {
		name string
		ops  []op
		tx   int // messages per transaction
	}{
		{"results first", append(slices.Clone(results), events...), 1},
		{"events first", append(slices.Clone(events), results...), 1},
		{"random 1", interleave(rand.New(rand.NewPCG(1, 1)), results, events), 1},
		{"random 2, batches of 7", interleave(rand.New(rand.NewPCG(2, 2)), results, events), 7},
		{"random 3, one transaction", interleave(rand.New(rand.NewPCG(3, 3)), results, events), 1 << 20},
	} {
		t.Run(order.name, func(t *testing.T) {
			s := openTemp(t)
			for ops := order.ops; len(ops) > 0; {
				n := min(order.tx, len(ops))
				mustTx(t, s, func(tx *Tx) error {
					for _, o := range ops[:n] {
						if err := o.apply(tx); err != nil {
							return err
						}
					}
					return nil
				})
				ops = ops[n:]
			}
			// Redelivery of everything changes nothing.
			mustTx(t, s, func(tx *Tx) error {
				for _, o := range order.ops {
					if err := o.apply(tx); err != nil {
						return err
					}
				}
				return nil
			})
			list := checkAgainstCounters(t, s)
			if len(list) != 6 {
				t.Fatalf("%d executions, want 6", len(list))
			}
			fp, err := s.Fingerprint(ctx, "executions")
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				first = fp
				e2 := list[slices.IndexFunc(list, func(e ExecutionSummary) bool { return e.ExecID == "exec-2" })]
				if e2.JobID != "inventory" || !e2.FirstSeenAt.Equal(t0.Add(-24*time.Hour)) ||
					!e2.LastResultAt.Equal(t0.Add(3*time.Hour+5*time.Minute+5*time.Second)) || e2.Running != 3 {
					t.Errorf("exec-2 = %+v", e2)
				}
				e5 := list[0]
				// pc05's newer copy finishes at +5s +5min +1h.
				if e5.ExecID != "exec-5" || !e5.LastResultAt.Equal(t0.Add(6*time.Hour+5*time.Second+5*time.Minute)) {
					t.Errorf("newest execution = %+v", e5)
				}
			} else if fp != first {
				t.Errorf("fingerprint %+v, want %+v as with the first order", fp, first)
			}
		})
	}
}

func TestExecutionsFollowRetention(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	results, events := executionOps()
	mustTx(t, s, func(tx *Tx) error {
		for _, o := range append(events, results...) {
			if err := o.apply(tx); err != nil {
				return err
			}
		}
		return nil
	})
	before := checkAgainstCounters(t, s)
	// Trim results first: PCs whose started row remains count as running
	// again, as ExecutionCounters says. Then trim started: nothing runs.
	for _, step := range []struct {
		table   string
		cutoff  time.Time
		running int
	}{
		{"results", t0.Add(3 * time.Hour), -1},
		{"started", t0.Add(100 * time.Hour), 0},
	} {
		if _, err := s.TrimOlderThan(ctx, step.table, step.cutoff, 5); err != nil {
			t.Fatal(err)
		}
		after := checkAgainstCounters(t, s)
		if len(after) != len(before) {
			t.Fatalf("after trimming %s: %d executions, want %d (rows are never trimmed)", step.table, len(after), len(before))
		}
		total := 0
		for i, e := range after {
			total += e.Running
			if e.JobID != before[i].JobID || !e.FirstSeenAt.Equal(before[i].FirstSeenAt) || !e.LastResultAt.Equal(before[i].LastResultAt) {
				t.Errorf("after trimming %s: %+v, was %+v", step.table, e, before[i])
			}
		}
		if step.running >= 0 && total != step.running {
			t.Errorf("after trimming %s: %d running, want %d", step.table, total, step.running)
		}
	}
}

// TestMigrationBackfillsExistingDatabases takes the schema back to version
// 2, as a database written by an older server, and up again: the backfill
// must give the rows the triggers maintain.
func TestMigrationBackfillsExistingDatabases(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	results, events := executionOps()
	mustTx(t, s, func(tx *Tx) error {
		for _, o := range append(events, results...) {
			if o.started != nil {
				e := *o.started
				e.JobID = "" // version 2 had no started.job_id
				o.started = &e
			}
			// The backfill sees only the current copy of a result.
			if o.result != nil && o.result.ResultID == "exec-0-pc05" {
				continue
			}
			if err := o.apply(tx); err != nil {
				return err
			}
		}
		return nil
	})
	// An execution whose results were all trimmed keeps its counters.
	mustTx(t, s, func(tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO exec_counters (exec_id, results, succeeded) VALUES ('old-exec', 3, 3)`)
		return err
	})
	want, err := s.Fingerprint(ctx, "executions")
	if err != nil {
		t.Fatal(err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, s.w, sub, goose.WithDisableGlobalRegistry(true), goose.WithSlog(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Count(ctx, "executions"); err == nil {
		t.Fatal("executions still exists at version 2")
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatal(err)
	}
	// old-exec has no trigger-made row to compare with; it is listed last,
	// with unknown times.
	list := checkAgainstCounters(t, s)
	last := list[len(list)-1]
	if last.ExecID != "old-exec" || !last.FirstSeenAt.IsZero() || last.Results != 3 {
		t.Fatalf("backfilled counter-only execution = %+v", last)
	}
	mustTx(t, s, func(tx *Tx) error {
		_, err := tx.Exec(`DELETE FROM executions WHERE exec_id = 'old-exec'`)
		return err
	})
	got, err := s.Fingerprint(ctx, "executions")
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("backfilled executions %+v, want %+v as the triggers made them", got, want)
	}
}
