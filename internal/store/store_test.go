package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/wire"
)

func openTemp(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "kanade.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustTx(t testing.TB, s *Store, fn func(*Tx) error) {
	t.Helper()
	if err := s.Tx(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func result(id, exec, pc string, code int) wire.ExecResult {
	return wire.ExecResult{ResultID: id, RequestID: "req-" + exec, ExecID: exec, PCID: pc, ExitCode: code,
		Stdout: "out " + id, StartedAt: t0, FinishedAt: t0.Add(time.Second)}
}

func TestOpenCreatesSchemaOnceWithPragmas(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kanade.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Fresh() {
		t.Error("the first Open of a new file must report Fresh")
	}
	for pragma, want := range map[string]string{"journal_mode": "wal", "synchronous": "1", "foreign_keys": "1", "busy_timeout": "10000"} {
		var got string
		if err := s.w.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("writer PRAGMA %s = %s, want %s", pragma, got, want)
		}
		if err := s.r.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("reader PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
	if _, err := s.r.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('x', 'y')`); err == nil {
		t.Error("the read pool accepted a write")
	}
	if err := s.SetMeta(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Fresh() {
		t.Error("reopening an existing database must not report Fresh")
	}
	if v, ok, err := s.Meta(ctx, "k"); err != nil || !ok || v != "v" {
		t.Errorf("meta after reopen = %q %v %v, want v", v, ok, err)
	}
}

func TestUpsertResultSameResultTwiceCountsOnce(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	r := result("r1", "e1", "pc1", 0)
	mustTx(t, s, func(tx *Tx) error { return tx.UpsertResult(r, 1) })
	// The same message again (a redelivery), in another transaction and
	// twice within one.
	mustTx(t, s, func(tx *Tx) error { return tx.UpsertResult(r, 1) })
	mustTx(t, s, func(tx *Tx) error {
		if err := tx.UpsertResult(r, 1); err != nil {
			return err
		}
		return tx.UpsertResult(r, 1)
	})
	if n, _ := s.Count(ctx, "results"); n != 1 {
		t.Fatalf("results rows = %d, want 1", n)
	}
	c, err := s.ExecutionCounters(ctx, "e1")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Counters{ExecID: "e1", Results: 1, Succeeded: 1}); c != want {
		t.Fatalf("counters = %+v, want %+v", c, want)
	}

	// A newer publication of the same result_id with another outcome moves
	// the counters; an older one afterwards changes nothing.
	killed := r
	killed.ExitCode = wire.ExitKilled
	mustTx(t, s, func(tx *Tx) error { return tx.UpsertResult(killed, 5) })
	mustTx(t, s, func(tx *Tx) error { return tx.UpsertResult(r, 3) })
	c, _ = s.ExecutionCounters(ctx, "e1")
	if want := (Counters{ExecID: "e1", Results: 1, Killed: 1}); c != want {
		t.Fatalf("counters after a newer killed result = %+v, want %+v", c, want)
	}
	rs, err := s.ListResults(ctx, ResultFilter{ExecID: "e1"})
	if err != nil || len(rs) != 1 || rs[0].Outcome != OutcomeKilled || rs[0].StreamSeq != 5 {
		t.Fatalf("results = %+v, %v; want one killed row at seq 5", rs, err)
	}
}

func TestExecutionCountersByOutcome(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	skipped := result("r4", "e1", "pc4", wire.ExitRevoked)
	skipped.Skipped = true
	mustTx(t, s, func(tx *Tx) error {
		for i, r := range []wire.ExecResult{
			result("r1", "e1", "pc1", 0), result("r2", "e1", "pc2", 3), result("r3", "e1", "pc3", wire.ExitKilled),
			skipped, result("r5", "e1", "pc5", wire.ExitRefusedSignature), result("x1", "e2", "pc1", 0),
		} {
			if err := tx.UpsertResult(r, uint64(i+1)); err != nil {
				return err
			}
		}
		return nil
	})
	c, _ := s.ExecutionCounters(ctx, "e1")
	if want := (Counters{ExecID: "e1", Results: 5, Succeeded: 1, Failed: 2, Skipped: 1, Killed: 1}); c != want {
		t.Fatalf("counters = %+v, want %+v", c, want)
	}
	if c, _ := s.ExecutionCounters(ctx, "nope"); c != (Counters{ExecID: "nope"}) {
		t.Fatalf("unknown execution counters = %+v, want zeros", c)
	}
}

func TestStartedAndResultInEitherOrderEndFinished(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	started := func(id, pc string) wire.EventStarted {
		return wire.EventStarted{ResultID: id, RequestID: "req-e1", ExecID: "e1", PCID: pc, StartedAt: t0}
	}
	// pcA: started, then result. pcB: result, then started. pcC: started only.
	mustTx(t, s, func(tx *Tx) error { return tx.AddStarted(started("rA", "pcA")) })
	mustTx(t, s, func(tx *Tx) error { return tx.AddStarted(started("rC", "pcC")) })
	mustTx(t, s, func(tx *Tx) error { return tx.UpsertResult(result("rB", "e1", "pcB", 1), 1) })
	c, _ := s.ExecutionCounters(ctx, "e1")
	if c.Running != 2 {
		t.Fatalf("running before the results = %d, want 2 (pcA, pcC)", c.Running)
	}
	mustTx(t, s, func(tx *Tx) error { return tx.UpsertResult(result("rA", "e1", "pcA", 0), 2) })
	mustTx(t, s, func(tx *Tx) error { return tx.AddStarted(started("rB", "pcB")) })
	mustTx(t, s, func(tx *Tx) error { return tx.AddStarted(started("rB", "pcB")) }) // redelivered

	pcs, err := s.ExecutionPCs(ctx, "e1")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range pcs {
		got[p.PCID] = p.State
	}
	want := map[string]string{"pcA": OutcomeSucceeded, "pcB": OutcomeFailed, "pcC": OutcomeRunning}
	if fmt.Sprint(got) != fmt.Sprint(want) || len(pcs) != 3 {
		t.Fatalf("states = %v (%d rows), want %v", got, len(pcs), want)
	}
	c, _ = s.ExecutionCounters(ctx, "e1")
	if c.Running != 1 || c.Results != 2 {
		t.Fatalf("counters = %+v, want 2 results and 1 running", c)
	}
}

func TestTimelineDuplicateRecordIDKeepsOneRow(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	ev := wire.ObsEvent{PCID: "pc1", At: t0, Kind: wire.ObsAgentOnline, Source: "agent", EventRecordID: "online-1",
		Payload: json.RawMessage(`{"version":"1.0"}`)}
	dup := ev
	dup.Payload = json.RawMessage(`{"version":"2.0"}`)
	other := ev
	other.Source = "backend" // same record id, another source: another event
	mustTx(t, s, func(tx *Tx) error {
		if err := tx.AddTimeline(ev, 1); err != nil {
			return err
		}
		return tx.AddTimeline(dup, 2)
	})
	mustTx(t, s, func(tx *Tx) error { return tx.AddTimeline(other, 3) })
	evs, err := s.Timeline(ctx, TimelineFilter{PCID: "pc1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 {
		t.Fatalf("timeline rows = %d, want 2: %+v", len(evs), evs)
	}
	for _, e := range evs {
		if e.Source == "agent" && (string(e.Payload) != `{"version":"1.0"}` || e.StreamSeq != 1) {
			t.Errorf("the first event must win: %+v", e)
		}
	}
	if evs, _ := s.Timeline(ctx, TimelineFilter{Kind: "agent_update"}); len(evs) != 0 {
		t.Errorf("kind filter returned %d rows, want 0", len(evs))
	}
}

func TestInventoryFullMarkerAndChange(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	full := wire.InventoryMessage{PCID: "pc1", Section: wire.SectionOS, CollectedAt: t0, Hash: "h1", Data: json.RawMessage(`{"name":"Debian"}`)}
	marker := wire.InventoryMessage{PCID: "pc1", Section: wire.SectionOS, CollectedAt: t0.Add(time.Hour), Hash: "h1", Unchanged: true}
	wrong := wire.InventoryMessage{PCID: "pc1", Section: wire.SectionOS, CollectedAt: t0.Add(3 * time.Hour), Hash: "zz", Unchanged: true}
	changed := wire.InventoryMessage{PCID: "pc1", Section: wire.SectionOS, CollectedAt: t0.Add(2 * time.Hour), Hash: "h2", Data: json.RawMessage(`{"name":"Debian 13"}`)}

	latest := func() InventorySection {
		t.Helper()
		v, err := s.InventoryLatest(ctx, "pc1")
		if err != nil || len(v) != 1 {
			t.Fatalf("latest = %+v, %v; want one section", v, err)
		}
		return v[0]
	}
	mustTx(t, s, func(tx *Tx) error { return tx.ApplyInventory(full) })
	if l := latest(); l.Hash != "h1" || !l.CollectedAt.Equal(t0) || !l.ConfirmedAt.Equal(t0) || string(l.Data) != `{"name":"Debian"}` {
		t.Fatalf("after the full section: %+v", l)
	}
	mustTx(t, s, func(tx *Tx) error { return tx.ApplyInventory(marker) })
	if l := latest(); l.Hash != "h1" || !l.CollectedAt.Equal(t0) || !l.ConfirmedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("a matching marker must only advance confirmed_at: %+v", l)
	}
	mustTx(t, s, func(tx *Tx) error { return tx.ApplyInventory(wrong) })
	if l := latest(); !l.ConfirmedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("a marker with another hash must change nothing: %+v", l)
	}
	mustTx(t, s, func(tx *Tx) error { return tx.ApplyInventory(changed) })
	mustTx(t, s, func(tx *Tx) error { return tx.ApplyInventory(full) }) // an old one redelivered
	if l := latest(); l.Hash != "h2" || !l.CollectedAt.Equal(t0.Add(2*time.Hour)) || string(l.Data) != `{"name":"Debian 13"}` {
		t.Fatalf("after the changed section: %+v", l)
	}
	h, err := s.InventoryHistory(ctx, "pc1", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 || h[0].Hash != "h2" || h[1].Hash != "h1" {
		t.Fatalf("history = %+v, want h2 then h1", h)
	}
}

func TestAuditKeyedBySequence(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	mustTx(t, s, func(tx *Tx) error {
		for i := 1; i <= 3; i++ {
			e := wire.AuditEvent{At: t0.Add(time.Duration(i) * time.Second), Actor: "alice", Action: "job.create", Target: fmt.Sprint("job", i),
				Payload: json.RawMessage(`{"n":` + fmt.Sprint(i) + `}`)}
			if err := tx.AddAudit(e, uint64(i)); err != nil {
				return err
			}
		}
		return tx.AddAudit(wire.AuditEvent{At: t0, Actor: "mallory", Action: "x"}, 2) // same seq: ignored
	})
	a, err := s.AuditList(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 3 || a[0].Seq != 3 || a[2].Seq != 1 || a[1].Actor != "alice" || string(a[0].Payload) != `{"n":3}` {
		t.Fatalf("audit = %+v", a)
	}
}

func TestInvalidInputsAreRejectedAsInvalid(t *testing.T) {
	s := openTemp(t)
	for name, fn := range map[string]func(*Tx) error{
		"result":  func(tx *Tx) error { return tx.UpsertResult(wire.ExecResult{ExecID: "e"}, 1) },
		"started": func(tx *Tx) error { return tx.AddStarted(wire.EventStarted{ResultID: "r"}) },
		"obs":     func(tx *Tx) error { return tx.AddTimeline(wire.ObsEvent{Kind: "k"}, 1) },
		"inventory": func(tx *Tx) error {
			return tx.ApplyInventory(wire.InventoryMessage{PCID: "p", Section: "os", Hash: "h"})
		},
		"audit": func(tx *Tx) error { return tx.AddAudit(wire.AuditEvent{Actor: "a"}, 1) },
	} {
		if err := s.Tx(context.Background(), fn); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

func hb(pc, version string, seen time.Time) Heartbeat {
	return Heartbeat{Heartbeat: wire.Heartbeat{PCID: pc, At: seen, AgentVersion: version, Hostname: "host-" + pc, OSFamily: "linux"}, SeenAt: seen}
}

func TestHeartbeatsNewestWinsAndLastSeenNeverMovesBack(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	now := t0.Add(time.Minute)
	s.SetClock(func() time.Time { return now })
	// One batch, three PCs, several heartbeats each in no particular order.
	mustTx(t, s, func(tx *Tx) error {
		return tx.UpsertHeartbeats([]Heartbeat{
			hb("pc1", "v2", t0.Add(20*time.Second)), hb("pc1", "v1", t0.Add(10*time.Second)), hb("pc1", "v3", t0.Add(30*time.Second)),
			hb("pc2", "v2", t0.Add(20*time.Second)), hb("pc2", "v1", t0.Add(10*time.Second)),
			hb("pc3", "v1", t0),
		})
	})
	for pc, want := range map[string]string{"pc1": "v3", "pc2": "v2", "pc3": "v1"} {
		a, err := s.GetAgent(ctx, pc)
		if err != nil {
			t.Fatal(err)
		}
		if a.AgentVersion != want {
			t.Errorf("%s version = %s, want %s (the newest heartbeat)", pc, a.AgentVersion, want)
		}
	}
	// An older heartbeat in a later batch changes nothing.
	mustTx(t, s, func(tx *Tx) error { return tx.UpsertHeartbeats([]Heartbeat{hb("pc1", "old", t0)}) })
	a, _ := s.GetAgent(ctx, "pc1")
	if a.AgentVersion != "v3" || !a.LastSeen.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("an older heartbeat moved pc1: version %s last_seen %s", a.AgentVersion, a.LastSeen)
	}
	if !a.FirstSeen.Equal(t0.Add(30 * time.Second)) {
		t.Errorf("first_seen = %s", a.FirstSeen)
	}
	if _, err := s.GetAgent(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetAgent(unknown) err = %v, want ErrNotFound", err)
	}
}

func TestAgentOnlineOfflineSince(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	var now time.Time
	s.SetClock(func() time.Time { return now })
	mustTx(t, s, func(tx *Tx) error { return tx.UpsertHeartbeats([]Heartbeat{hb("pc1", "v1", t0)}) })
	mustTx(t, s, func(tx *Tx) error { return tx.UpsertHeartbeats([]Heartbeat{hb("pc1", "v1", t0.Add(30*time.Second))}) })

	now = t0.Add(30*time.Second + 89*time.Second) // within 3 × 30 s of the last heartbeat
	a, _ := s.GetAgent(ctx, "pc1")
	if !a.Online || !a.Since.Equal(t0) {
		t.Fatalf("at +119s: online=%v since=%s, want online since %s", a.Online, a.Since, t0)
	}
	now = t0.Add(30*time.Second + 90*time.Second)
	a, _ = s.GetAgent(ctx, "pc1")
	if a.Online || !a.Since.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("at +120s: online=%v since=%s, want offline since the last heartbeat", a.Online, a.Since)
	}
	if on, off, err := s.AgentCounts(ctx); err != nil || on != 0 || off != 1 {
		t.Fatalf("counts = %d online %d offline (%v), want 0/1", on, off, err)
	}
	// Back after a gap: online again, since the new heartbeat.
	back := t0.Add(10 * time.Minute)
	now = back.Add(time.Second)
	mustTx(t, s, func(tx *Tx) error { return tx.UpsertHeartbeats([]Heartbeat{hb("pc1", "v1", back)}) })
	a, _ = s.GetAgent(ctx, "pc1")
	if !a.Online || !a.Since.Equal(back) {
		t.Fatalf("after the gap: online=%v since=%s, want online since %s", a.Online, a.Since, back)
	}
	if on, off, _ := s.AgentCounts(ctx); on != 1 || off != 0 {
		t.Fatalf("counts = %d/%d, want 1/0", on, off)
	}
}

func TestListAgentsFiltersSortsAndPages(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	now := t0.Add(time.Hour)
	s.SetClock(func() time.Time { return now })
	var hbs []Heartbeat
	for i := range 50 {
		h := hb(fmt.Sprintf("PC-%03d", i), fmt.Sprintf("v%d", i%3), now.Add(-time.Duration(i)*10*time.Second))
		h.OSFamily = []string{"windows", "linux"}[i%2]
		if i%5 == 0 {
			h.Groups = []string{"canary", "lab"}
		}
		if i == 7 {
			h.Hostname = "finance_desk%7"
		}
		// i%4: enforced, off, fail_closed, too old to say.
		h.CommandSigning = []string{wire.CommandSigningEnforced, wire.CommandSigningOff, wire.CommandSigningFailClosed, ""}[i%4]
		hbs = append(hbs, h)
	}
	mustTx(t, s, func(tx *Tx) error { return tx.UpsertHeartbeats(hbs) })

	on, off := true, false
	cases := []struct {
		name  string
		f     AgentFilter
		total int
		first string
	}{
		{"all", AgentFilter{}, 50, "PC-000"},
		{"online", AgentFilter{Online: &on}, 9, "PC-000"},    // last seen < 90 s ago: i = 0..8
		{"offline", AgentFilter{Online: &off}, 41, "PC-009"}, // i >= 9
		{"version", AgentFilter{Version: "v1"}, 17, "PC-001"},
		{"os", AgentFilter{OS: "linux"}, 25, "PC-001"},
		{"group", AgentFilter{Group: "canary"}, 10, "PC-000"},
		{"group and os", AgentFilter{Group: "lab", OS: "linux"}, 5, "PC-005"},
		{"command_signing enforced", AgentFilter{CommandSigning: wire.CommandSigningEnforced}, 13, "PC-000"},
		{"command_signing off", AgentFilter{CommandSigning: wire.CommandSigningOff}, 13, "PC-001"},
		{"command_signing fail_closed and os", AgentFilter{CommandSigning: wire.CommandSigningFailClosed, OS: "windows"}, 12, "PC-002"},
		{"command_signing unknown", AgentFilter{CommandSigning: CommandSigningUnknown}, 12, "PC-003"},
		{"query pc", AgentFilter{Query: "pc-04"}, 10, "PC-040"},
		{"query escapes wildcards", AgentFilter{Query: "desk%7"}, 1, "PC-007"},
		{"query wildcard literal", AgentFilter{Query: "_"}, 1, "PC-007"},
		{"sort last_seen", AgentFilter{Sort: "last_seen"}, 50, "PC-049"},
		{"sort -pc_id", AgentFilter{Sort: "-pc_id"}, 50, "PC-049"},
		{"page", AgentFilter{Limit: 10, Offset: 20}, 50, "PC-020"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, total, err := s.ListAgents(ctx, c.f)
			if err != nil {
				t.Fatal(err)
			}
			if total != c.total {
				t.Errorf("total = %d, want %d", total, c.total)
			}
			if len(got) == 0 || got[0].PCID != c.first {
				t.Fatalf("first = %v, want %s", got, c.first)
			}
			if c.f.Limit > 0 && len(got) != c.f.Limit {
				t.Errorf("page size = %d, want %d", len(got), c.f.Limit)
			}
			if c.f.Online != nil {
				for _, a := range got {
					if a.Online != *c.f.Online {
						t.Errorf("%s online = %v", a.PCID, a.Online)
					}
				}
			}
			if want := c.f.CommandSigning; want != "" {
				if want == CommandSigningUnknown {
					want = ""
				}
				for _, a := range got {
					if a.CommandSigning != want {
						t.Errorf("%s command_signing = %q, want %q", a.PCID, a.CommandSigning, want)
					}
				}
			}
		})
	}
	if _, _, err := s.ListAgents(ctx, AgentFilter{Sort: "cpu; DROP TABLE agents"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown sort err = %v, want ErrInvalid", err)
	}
	// No agent reports no_keys: an accepted value that matches none.
	if got, total, err := s.ListAgents(ctx, AgentFilter{CommandSigning: wire.CommandSigningNoKeys}); err != nil || total != 0 || len(got) != 0 {
		t.Errorf("command_signing no_keys = %d agents of %d (%v), want none", len(got), total, err)
	}
	// "" is no filter, so it cannot be asked for directly; any value
	// outside the list is refused, naming the accepted ones.
	for _, bad := range []string{"ENFORCED", "on", "' OR 1=1 --"} {
		_, _, err := s.ListAgents(ctx, AgentFilter{CommandSigning: bad})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "off, enforced, no_keys, fail_closed, unknown") {
			t.Errorf("command_signing %q err = %v, want ErrInvalid listing the accepted values", bad, err)
		}
	}
}

func TestListResultsNewestFirstWithCursor(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	mustTx(t, s, func(tx *Tx) error {
		for i := range 25 {
			r := result(fmt.Sprintf("r%02d", i), "e1", fmt.Sprintf("pc%d", i%2), 0)
			r.FinishedAt = t0.Add(time.Duration(i/2) * time.Second) // pairs share a finish time
			if err := tx.UpsertResult(r, uint64(i+1)); err != nil {
				return err
			}
		}
		return tx.UpsertResult(result("other", "e2", "pc0", 0), 100)
	})
	var seen []string
	f := ResultFilter{ExecID: "e1", Limit: 10}
	for {
		page, err := s.ListResults(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			seen = append(seen, r.ResultID)
		}
		if len(page) < f.Limit {
			break
		}
		last := page[len(page)-1]
		f.Before, f.BeforeID = last.FinishedAt, last.ResultID
	}
	if len(seen) != 25 {
		t.Fatalf("paged through %d results, want 25: %v", len(seen), seen)
	}
	for i, id := range seen {
		if want := fmt.Sprintf("r%02d", 24-i); id != want {
			t.Fatalf("result %d = %s, want %s (newest first): %v", i, id, want, seen)
		}
	}
	pc1, _ := s.ListResults(ctx, ResultFilter{ExecID: "e1", PCID: "pc1", Limit: 100})
	if len(pc1) != 12 {
		t.Errorf("pc1 results = %d, want 12", len(pc1))
	}
	if rs, _ := s.ListResults(ctx, ResultFilter{ExecID: "e1", Limit: 1}); rs[0].Stdout != "out r24" {
		t.Errorf("stdout = %q", rs[0].Stdout)
	}
}

func TestTrimOlderThanDeletesInBatches(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	mustTx(t, s, func(tx *Tx) error {
		for i := range 100 {
			r := result(fmt.Sprintf("r%03d", i), "e1", "pc", 0)
			r.FinishedAt = t0.Add(time.Duration(i) * time.Minute)
			if err := tx.UpsertResult(r, uint64(i+1)); err != nil {
				return err
			}
			if err := tx.AddTimeline(wire.ObsEvent{PCID: "pc", Kind: "k", Source: "agent", EventRecordID: fmt.Sprint(i), At: r.FinishedAt}, uint64(i+1)); err != nil {
				return err
			}
		}
		return nil
	})
	n, err := s.TrimOlderThan(ctx, "results", t0.Add(73*time.Minute), 10)
	if err != nil || n != 73 {
		t.Fatalf("trimmed %d (%v), want 73", n, err)
	}
	if left, _ := s.Count(ctx, "results"); left != 27 {
		t.Fatalf("%d results left, want 27", left)
	}
	rs, _ := s.ListResults(ctx, ResultFilter{Limit: 1000})
	if rs[len(rs)-1].ResultID != "r073" {
		t.Fatalf("oldest kept = %s, want r073", rs[len(rs)-1].ResultID)
	}
	if n, _ := s.TrimOlderThan(ctx, "timeline", t0.Add(50*time.Minute), 7); n != 50 {
		t.Fatalf("timeline trimmed %d, want 50", n)
	}
	if c, _ := s.ExecutionCounters(ctx, "e1"); c.Results != 100 {
		t.Errorf("trimming must keep the counters: %+v", c)
	}
	if _, err := s.TrimOlderThan(ctx, "agents", t0, 10); !errors.Is(err, ErrInvalid) {
		t.Errorf("trimming agents: err = %v, want ErrInvalid", err)
	}
}

func TestFingerprintEqualForSameContentOnly(t *testing.T) {
	ctx := context.Background()
	fill := func(s *Store, code int) {
		mustTx(t, s, func(tx *Tx) error {
			for i := range 20 {
				if err := tx.UpsertResult(result(fmt.Sprint("r", i), "e1", "pc", code*i), uint64(i+1)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	a, b, c := openTemp(t), openTemp(t), openTemp(t)
	fill(a, 1)
	fill(b, 1)
	fill(c, 2)
	fa, _ := a.Fingerprint(ctx, "results")
	fb, _ := b.Fingerprint(ctx, "results")
	fc, err := c.Fingerprint(ctx, "results")
	if err != nil {
		t.Fatal(err)
	}
	if fa != fb || fa.Rows != 20 {
		t.Errorf("same content: %+v vs %+v", fa, fb)
	}
	if fa == fc || fc.Rows != 20 {
		t.Errorf("different exit codes gave the same fingerprint %+v", fa)
	}
	// agents: the signing state and keys are content (a rebuild must
	// restore them from the next heartbeats).
	agents := func(s *Store, state string, keys wire.KeyIDs) Fingerprint {
		h := hb("pc1", "v1", t0)
		h.CommandSigning, h.CommandKeyFingerprints = state, keys
		mustTx(t, s, func(tx *Tx) error { return tx.UpsertHeartbeats([]Heartbeat{h}) })
		f, err := s.Fingerprint(ctx, "agents")
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	enforced := agents(a, wire.CommandSigningEnforced, wire.KeyIDs{"34750f98bd59fcfc"})
	if f := agents(b, wire.CommandSigningEnforced, wire.KeyIDs{"34750f98bd59fcfc"}); f != enforced {
		t.Errorf("same agents: %+v vs %+v", f, enforced)
	}
	if f := agents(c, wire.CommandSigningEnforced, wire.KeyIDs{"9f86d081884c7d65"}); f == enforced {
		t.Errorf("different command keys gave the same agents fingerprint %+v", f)
	}
	d := openTemp(t)
	if f := agents(d, wire.CommandSigningOff, wire.KeyIDs{"34750f98bd59fcfc"}); f == enforced {
		t.Errorf("a different signing state gave the same agents fingerprint %+v", f)
	}
}

// TestDeclaredHeartbeatIntervalJudgesOffline: a PC that beats every 5 s is
// offline after 15 s of silence; one that declares nothing keeps the 30 s
// default (offline after 90 s).
func TestDeclaredHeartbeatIntervalJudgesOffline(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	fast := hb("fast", "v1", t0)
	fast.HeartbeatIntervalSecs = 5
	mustTx(t, s, func(tx *Tx) error { return tx.UpsertHeartbeats([]Heartbeat{fast, hb("legacy", "v1", t0)}) })
	s.SetClock(func() time.Time { return t0.Add(20 * time.Second) })
	for pc, online := range map[string]bool{"fast": false, "legacy": true} {
		a, err := s.GetAgent(ctx, pc)
		if err != nil {
			t.Fatal(err)
		}
		if a.Online != online || a.HeartbeatIntervalSecs != map[string]int{"fast": 5, "legacy": 30}[pc] {
			t.Errorf("%s: online=%v interval=%d", pc, a.Online, a.HeartbeatIntervalSecs)
		}
	}
}

// TestHeartbeatCommandSigningStoredAndUpdated: the signing state and key
// ids of a heartbeat land in agents, the next heartbeat replaces them, an
// older one does not, and an agent too old to report them reads "" and
// [] (never null).
func TestHeartbeatCommandSigningStoredAndUpdated(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	beat := func(seen time.Time, state string, keys wire.KeyIDs) Heartbeat {
		h := hb("pc1", "v1", seen)
		h.CommandSigning, h.CommandKeyFingerprints = state, keys
		return h
	}
	check := func(step, state string, keys []string) {
		t.Helper()
		a, err := s.GetAgent(ctx, "pc1")
		if err != nil {
			t.Fatal(err)
		}
		if a.CommandSigning != state || a.CommandKeyFingerprints == nil || strings.Join(a.CommandKeyFingerprints, ",") != strings.Join(keys, ",") {
			t.Errorf("%s: command_signing %q keys %#v, want %q %q", step, a.CommandSigning, a.CommandKeyFingerprints, state, keys)
		}
		b, _ := json.Marshal(a)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		if _, ok := m["command_key_fingerprints"].([]any); !ok {
			t.Errorf("%s: command_key_fingerprints encodes as %s, want an array", step, b)
		}
		if _, ok := m["command_signing"].(string); !ok {
			t.Errorf("%s: command_signing missing from %s", step, b)
		}
	}
	mustTx(t, s, func(tx *Tx) error {
		return tx.UpsertHeartbeats([]Heartbeat{beat(t0, wire.CommandSigningEnforced, wire.KeyIDs{"34750f98bd59fcfc", "9f86d081884c7d65"})})
	})
	check("first heartbeat", wire.CommandSigningEnforced, []string{"34750f98bd59fcfc", "9f86d081884c7d65"})

	mustTx(t, s, func(tx *Tx) error {
		return tx.UpsertHeartbeats([]Heartbeat{beat(t0.Add(time.Second), wire.CommandSigningFailClosed, wire.KeyIDs{})})
	})
	check("next heartbeat", wire.CommandSigningFailClosed, nil)

	// An older heartbeat (a late delivery) changes nothing.
	mustTx(t, s, func(tx *Tx) error {
		return tx.UpsertHeartbeats([]Heartbeat{beat(t0, wire.CommandSigningOff, wire.KeyIDs{"aaaaaaaaaaaaaaaa"})})
	})
	check("older heartbeat", wire.CommandSigningFailClosed, nil)

	mustTx(t, s, func(tx *Tx) error {
		return tx.UpsertHeartbeats([]Heartbeat{beat(t0.Add(2*time.Second), wire.CommandSigningEnforced, wire.KeyIDs{"9f86d081884c7d65"})})
	})
	check("key rotated", wire.CommandSigningEnforced, []string{"9f86d081884c7d65"})

	// Downgraded to an agent that does not report them.
	mustTx(t, s, func(tx *Tx) error { return tx.UpsertHeartbeats([]Heartbeat{beat(t0.Add(3*time.Second), "", nil)}) })
	check("old agent", "", nil)
}
