package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/kanade-project/kanade/internal/wire"
)

// auditFixture stores 30 audit entries (seq 1..30): three actors, four
// actions, targets cycling over five values and sometimes empty.
func auditFixture(t *testing.T, s *Store) []wire.AuditEvent {
	t.Helper()
	actors := []string{"token", "alice", "bob"}
	actions := []string{"run", "kill", "revoke", "set_groups"}
	var evs []wire.AuditEvent
	mustTx(t, s, func(tx *Tx) error {
		for i := range 30 {
			e := wire.AuditEvent{At: t0.Add(time.Duration(i) * time.Minute), Actor: actors[i%3], Action: actions[i%4]}
			if i%6 != 5 {
				e.Target = fmt.Sprintf("t%d", i%5)
			}
			evs = append(evs, e)
			if err := tx.AddAudit(e, uint64(i+1)); err != nil {
				return err
			}
		}
		return nil
	})
	return evs
}

func TestListAuditFiltersAndPages(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	evs := auditFixture(t, s)
	// want lists the seqs a filter selects, newest first, by brute force.
	want := func(f AuditFilter) []uint64 {
		var out []uint64
		for i := len(evs) - 1; i >= 0; i-- {
			e := evs[i]
			if (f.Action == "" || e.Action == f.Action) && (f.Target == "" || e.Target == f.Target) && (f.Actor == "" || e.Actor == f.Actor) {
				out = append(out, uint64(i+1))
			}
		}
		return out
	}
	tests := []struct {
		name string
		f    AuditFilter
	}{
		{"everything", AuditFilter{}},
		{"one action", AuditFilter{Action: "run"}},
		{"action and target", AuditFilter{Action: "run", Target: "t2"}},
		{"actor", AuditFilter{Actor: "alice"}},
		{"all three", AuditFilter{Action: "kill", Target: "t1", Actor: "alice"}},
		{"no such action", AuditFilter{Action: "nothing"}},
		{"exact, not a substring", AuditFilter{Action: "ru"}},
	}
	for _, tt := range tests {
		for _, limit := range []int{1, 4, 100} {
			t.Run(fmt.Sprintf("%s/limit %d", tt.name, limit), func(t *testing.T) {
				f := tt.f
				f.Limit = limit
				var got []uint64
				for pages := 0; ; pages++ {
					if pages > 40 {
						t.Fatal("more pages than entries")
					}
					page, err := s.ListAudit(ctx, f)
					if err != nil {
						t.Fatal(err)
					}
					if len(page.Entries) > limit {
						t.Fatalf("page of %d with limit %d", len(page.Entries), limit)
					}
					for _, e := range page.Entries {
						got = append(got, e.Seq)
					}
					if page.Next == 0 {
						break
					}
					if page.Next != page.Entries[len(page.Entries)-1].Seq {
						t.Fatalf("next %d is not the last seq of the page %v", page.Next, page.Entries)
					}
					f.Before = page.Next
				}
				if w := want(tt.f); !slices.Equal(got, w) {
					t.Fatalf("paged seqs %v, want %v", got, w)
				}
			})
		}
	}
	// AuditList is the first page of everything.
	list, err := s.AuditList(ctx, 3)
	if err != nil || len(list) != 3 || list[0].Seq != 30 || list[2].Seq != 28 {
		t.Fatalf("AuditList(3) = %+v, %v", list, err)
	}
}

func TestListTimelinePagesThroughEqualTimes(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	// 25 events on two PCs, many sharing a millisecond: a cursor on the
	// time alone would skip or repeat them at a page boundary.
	type ev struct {
		pc, rec, kind string
		at            time.Time
	}
	var all []ev
	mustTx(t, s, func(tx *Tx) error {
		for i := range 25 {
			e := ev{pc: []string{"pc-a", "pc-b"}[i%2], rec: fmt.Sprint(i), kind: []string{"agent_online", "service"}[i%3%2], at: t0.Add(time.Duration(i/4) * time.Second)}
			all = append(all, e)
			if err := tx.AddTimeline(wire.ObsEvent{PCID: e.pc, Source: "agent", EventRecordID: e.rec, Kind: e.kind, At: e.at}, uint64(i+1)); err != nil {
				return err
			}
		}
		return nil
	})
	// Newest first, equal times in reverse insertion order: as times grow
	// with insertion here, simply the reverse order.
	want := func(pc, kind string) []string {
		var out []string
		for i := len(all) - 1; i >= 0; i-- {
			if (pc == "" || all[i].pc == pc) && (kind == "" || all[i].kind == kind) {
				out = append(out, all[i].rec)
			}
		}
		return out
	}
	tests := []struct {
		name     string
		pc, kind string
		limit    int
	}{
		{"everything, pages of 3", "", "", 3},
		{"everything, one page", "", "", 100},
		{"one PC, pages of 2", "pc-a", "", 2},
		{"one kind, pages of 4", "", "service", 4},
		{"PC and kind, pages of 1", "pc-b", "agent_online", 1},
		{"no such PC", "pc-z", "", 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := TimelineFilter{PCID: tt.pc, Kind: tt.kind, Limit: tt.limit}
			var got []string
			for pages := 0; ; pages++ {
				if pages > 30 {
					t.Fatal("more pages than events")
				}
				page, err := s.ListTimeline(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				if len(page.Events) > tt.limit {
					t.Fatalf("page of %d with limit %d", len(page.Events), tt.limit)
				}
				for _, e := range page.Events {
					got = append(got, e.EventRecordID)
				}
				if page.Next == "" {
					break
				}
				f.Cursor = page.Next
			}
			if w := want(tt.pc, tt.kind); !slices.Equal(got, w) {
				t.Fatalf("paged %v, want %v", got, w)
			}
		})
	}
	for _, c := range []string{"!!", "bm9jb2xvbg", "MTI6"} { // not base64url; "nocolon"; "12:"
		if _, err := s.ListTimeline(ctx, TimelineFilter{Cursor: c}); !errors.Is(err, ErrInvalid) {
			t.Errorf("cursor %q: err = %v, want ErrInvalid", c, err)
		}
	}
}

func TestResultTimedOutIsStored(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		code     int
		skipped  bool
		flag     bool
		timedOut bool
		outcome  string
	}{
		{"killed by its timeout", wire.ExitKilled, false, true, true, OutcomeKilled},
		{"killed by an operator", wire.ExitKilled, false, false, false, OutcomeKilled},
		// The flag means a timeout only on a killed run (Classify).
		{"flag on a success", 0, false, true, false, OutcomeSucceeded},
		{"flag on a skipped result", wire.ExitRevoked, true, true, false, OutcomeSkipped},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTemp(t)
			r := result("r1", "e1", "pc1", tt.code)
			r.Skipped, r.TimedOut = tt.skipped, tt.flag
			mustTx(t, s, func(tx *Tx) error { return tx.UpsertResult(r, 1) })
			rs, err := s.ListResults(ctx, ResultFilter{ExecID: "e1"})
			if err != nil || len(rs) != 1 {
				t.Fatalf("ListResults = %+v, %v", rs, err)
			}
			if rs[0].TimedOut != tt.timedOut || rs[0].Outcome != tt.outcome {
				t.Errorf("result timed_out=%v outcome=%s, want %v %s", rs[0].TimedOut, rs[0].Outcome, tt.timedOut, tt.outcome)
			}
			pcs, err := s.ExecutionPCs(ctx, "e1")
			if err != nil || len(pcs) != 1 || pcs[0].TimedOut != tt.timedOut {
				t.Errorf("ExecutionPCs = %+v, %v; want timed_out %v", pcs, err, tt.timedOut)
			}
		})
	}

	t.Run("a newer copy replaces the flag", func(t *testing.T) {
		s := openTemp(t)
		r := result("r1", "e1", "pc1", wire.ExitKilled)
		mustTx(t, s, func(tx *Tx) error { return tx.UpsertResult(r, 1) })
		r.TimedOut = true
		mustTx(t, s, func(tx *Tx) error { return tx.UpsertResult(r, 2) })
		if rs, _ := s.ListResults(ctx, ResultFilter{}); len(rs) != 1 || !rs[0].TimedOut {
			t.Fatalf("after the newer copy: %+v", rs)
		}
	})

	t.Run("the fingerprint compares it", func(t *testing.T) {
		// Two databases equal but for one result's timed_out must not
		// verify as the same rebuild.
		a, b := openTemp(t), openTemp(t)
		r := result("r1", "e1", "pc1", wire.ExitKilled)
		r.TimedOut = true
		for _, s := range []*Store{a, b} {
			mustTx(t, s, func(tx *Tx) error { return tx.UpsertResult(r, 1) })
		}
		fa, _ := a.Fingerprint(ctx, "results")
		if fb, _ := b.Fingerprint(ctx, "results"); fa != fb {
			t.Fatalf("equal databases: %v != %v", fa, fb)
		}
		mustTx(t, b, func(tx *Tx) error {
			_, err := tx.Exec(`UPDATE results SET timed_out = 0`)
			return err
		})
		if fb, _ := b.Fingerprint(ctx, "results"); fa == fb {
			t.Fatal("the results fingerprint ignores timed_out")
		}
	})
}

// migratedTo opens a new database at path with the migrations up to
// version applied, as an older server left it; the caller closes it.
func migratedTo(t *testing.T, path string, version int64) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sub, goose.WithDisableGlobalRegistry(true), goose.WithSlog(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(context.Background(), version); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestMigrationAddsTimedOutToExistingResults opens a database made by the
// migrations before 00004, with a result in it, the way a server upgrade
// finds it.
func TestMigrationAddsTimedOutToExistingResults(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kanade.db")
	db := migratedTo(t, path, 3)
	// A row as the code before 00004 stored it.
	if _, err := db.ExecContext(ctx, `INSERT INTO results (result_id, exec_id, pc_id, exit_code, outcome, finished_at, stream_seq)
		VALUES ('r-old', 'e1', 'pc1', -1, 'killed', 1, 1)`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Fresh() {
		t.Error("an upgraded database reported Fresh: it would be replayed from scratch")
	}
	rs, err := s.ListResults(ctx, ResultFilter{})
	if err != nil || len(rs) != 1 || rs[0].ResultID != "r-old" || rs[0].TimedOut {
		t.Fatalf("the old row after the migration: %+v, %v", rs, err)
	}
	// New rows get the column.
	r := result("r-new", "e1", "pc1", wire.ExitKilled)
	r.TimedOut = true
	mustTx(t, s, func(tx *Tx) error { return tx.UpsertResult(r, 2) })
	if rs, _ := s.ListResults(ctx, ResultFilter{}); len(rs) != 2 || !rs[0].TimedOut && !rs[1].TimedOut {
		t.Fatalf("after a new timed-out result: %+v", rs)
	}
}

// TestMigrationAddsCommandSigningToExistingAgents opens a database made by
// the migrations before 00006, with an agent in it: the agent reads as not
// reporting its signing state until its next heartbeat says it.
func TestMigrationAddsCommandSigningToExistingAgents(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kanade.db")
	db := migratedTo(t, path, 5)
	// A row as the code before 00006 stored it.
	if _, err := db.ExecContext(ctx, `INSERT INTO agents (pc_id, agent_version, first_seen, last_seen, online_since)
		VALUES ('pc1', 'v1', 1, 1, 1)`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, err := s.GetAgent(ctx, "pc1")
	if err != nil || a.CommandSigning != "" || a.CommandKeyFingerprints == nil || len(a.CommandKeyFingerprints) != 0 {
		t.Fatalf("the old row after the migration: %+v, %v", a, err)
	}
	if got, total, err := s.ListAgents(ctx, AgentFilter{CommandSigning: CommandSigningUnknown}); err != nil || total != 1 || got[0].PCID != "pc1" {
		t.Fatalf("command_signing unknown after the migration: %+v of %d, %v", got, total, err)
	}
	h := hb("pc1", "v2", t0)
	h.CommandSigning, h.CommandKeyFingerprints = wire.CommandSigningEnforced, wire.KeyIDs{"34750f98bd59fcfc"}
	mustTx(t, s, func(tx *Tx) error { return tx.UpsertHeartbeats([]Heartbeat{h}) })
	if a, _ := s.GetAgent(ctx, "pc1"); a.CommandSigning != wire.CommandSigningEnforced || !slices.Equal(a.CommandKeyFingerprints, []string{"34750f98bd59fcfc"}) {
		t.Fatalf("after a heartbeat: %+v", a)
	}
}
