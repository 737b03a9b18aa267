package projector_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/projector"
	"github.com/kanade-project/kanade/internal/retry"
	"github.com/kanade-project/kanade/internal/store"
	"github.com/kanade-project/kanade/internal/wire"
)

type env struct {
	t  *testing.T
	b  *brokertest.Server
	nc *nats.Conn
	js jetstream.JetStream
}

func newEnv(t *testing.T) *env {
	t.Helper()
	b := brokertest.Start(t)
	nc := b.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, b: b, nc: nc, js: js}
}

func openStore(t testing.TB, path string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// running is a started projector; stop cancels it and waits for Run.
type running struct {
	*projector.Projector
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *running) stop() {
	r.cancel()
	<-r.done
}

func testOptions(js jetstream.JetStream, st *store.Store) projector.Options {
	return projector.Options{
		JS: js, Store: st,
		BatchWait:      20 * time.Millisecond,
		AckWait:        2 * time.Second,
		HeartbeatFlush: time.Hour, // tests flush explicitly unless they say otherwise
		LagInterval:    20 * time.Millisecond,
		Retry:          retry.Policy{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond},
	}
}

func start(t testing.TB, o projector.Options) *running {
	t.Helper()
	p, err := projector.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Projector: p, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		p.Run(ctx)
	}()
	t.Cleanup(r.stop)
	return r
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last state: %s", what, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) publish(subject string, v any) uint64 {
	e.t.Helper()
	var b []byte
	switch v := v.(type) {
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			e.t.Fatal(err)
		}
	}
	ack, err := e.js.Publish(context.Background(), subject, b)
	if err != nil {
		e.t.Fatalf("publish %s: %v", subject, err)
	}
	return ack.Sequence
}

// caughtUp waits until every projected stream's consumer has acked its
// stream's last message: everything is committed to SQLite.
func caughtUp(t testing.TB, r *running) {
	t.Helper()
	eventually(t, "the projectors to catch up", func() (bool, string) {
		r.RefreshLag(context.Background())
		st := r.Stats()
		for _, s := range st.Streams {
			if !s.LagKnown || s.Lag != 0 {
				return false, fmt.Sprintf("%+v", st.Streams)
			}
		}
		return true, ""
	})
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func result(id, exec, pc string, code int) wire.ExecResult {
	return wire.ExecResult{ResultID: id, RequestID: "req-" + exec, ExecID: exec, PCID: pc, ExitCode: code,
		Stdout: "ok\n", StartedAt: t0, FinishedAt: t0.Add(time.Second)}
}

func count(t testing.TB, st *store.Store, table string) int64 {
	t.Helper()
	n, err := st.Count(context.Background(), table)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestResultsPublishedTwiceGiveOneRowAndCountOnce(t *testing.T) {
	e := newEnv(t)
	st := openStore(t, filepath.Join(t.TempDir(), "k.db"))
	dup := result("r1", "e1", "pc1", 0)
	e.publish(wire.SubjectResultsLegacy(dup.RequestID), dup)
	e.publish(wire.SubjectResultsLegacy(dup.RequestID), dup) // no Msg-Id: the stream keeps both
	e.publish(wire.SubjectResultsLegacy("req-e1"), result("r2", "e1", "pc2", 2))
	e.publish(wire.SubjectResultsLegacy("req-e1"), result("r3", "e1", "pc3", wire.ExitKilled))
	e.publish(wire.SubjectResultsLegacy("req-e1"), []byte(`{not json`))
	e.publish(wire.SubjectResultsLegacy("req-e1"), []byte(`{"exec_id":"e1","pc_id":"pc9"}`)) // no result_id

	r := start(t, testOptions(e.js, st))
	caughtUp(t, r)
	rs, _ := r.Stats().Stream(wire.StreamResults)
	if rs.Applied != 4 || rs.DecodeErrors != 2 {
		t.Fatalf("stats = %+v, want 4 applied and 2 decode errors", rs)
	}
	if n := count(t, st, "results"); n != 3 {
		t.Fatalf("results rows = %d, want 3", n)
	}
	c, err := st.ExecutionCounters(context.Background(), "e1")
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.Counters{ExecID: "e1", Results: 3, Succeeded: 1, Failed: 1, Killed: 1}); c != want {
		t.Fatalf("counters = %+v, want %+v", c, want)
	}
	// The undecodable messages were acked too: nothing is pending.
	ci, err := e.js.Consumer(context.Background(), wire.StreamResults, "kanade_proj_results")
	if err != nil {
		t.Fatal(err)
	}
	info, err := ci.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.AckFloor.Stream != 6 || info.NumAckPending != 0 || info.NumPending != 0 {
		t.Fatalf("consumer ack floor %d, ack pending %d, pending %d; want 6, 0, 0", info.AckFloor.Stream, info.NumAckPending, info.NumPending)
	}
}

func TestStartedAndResultInEitherOrderBothEndFinished(t *testing.T) {
	e := newEnv(t)
	st := openStore(t, filepath.Join(t.TempDir(), "k.db"))
	ctx := context.Background()
	started := func(id, pc string) wire.EventStarted {
		return wire.EventStarted{ResultID: id, RequestID: "req-e1", ExecID: "e1", PCID: pc, StartedAt: t0}
	}
	r := start(t, testOptions(e.js, st))
	// Phase 1: pcA's started event, pcB's result.
	e.publish(wire.SubjectEventsStarted("e1", "pcA"), started("rA", "pcA"))
	e.publish(wire.SubjectResultsLegacy("req-e1"), result("rB", "e1", "pcB", 0))
	e.publish("events.other.e1.pcA", []byte(`{}`)) // a kind this version does not project
	caughtUp(t, r)
	states := func() map[string]string {
		pcs, err := st.ExecutionPCs(ctx, "e1")
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, p := range pcs {
			m[p.PCID] = p.State
		}
		return m
	}
	if got := fmt.Sprint(states()); got != "map[pcA:running pcB:succeeded]" {
		t.Fatalf("after phase 1: %s", got)
	}
	if c, _ := st.ExecutionCounters(ctx, "e1"); c.Running != 1 || c.Results != 1 {
		t.Fatalf("after phase 1 counters = %+v", c)
	}
	// Phase 2: pcA's result, pcB's (late) started event.
	e.publish(wire.SubjectResultsLegacy("req-e1"), result("rA", "e1", "pcA", 1))
	e.publish(wire.SubjectEventsStarted("e1", "pcB"), started("rB", "pcB"))
	caughtUp(t, r)
	if got := fmt.Sprint(states()); got != "map[pcA:failed pcB:succeeded]" {
		t.Fatalf("after phase 2: %s", got)
	}
	if c, _ := st.ExecutionCounters(ctx, "e1"); c.Running != 0 || c.Results != 2 {
		t.Fatalf("after phase 2 counters = %+v", c)
	}
	if n := count(t, st, "started"); n != 2 {
		t.Fatalf("started rows = %d, want 2", n)
	}
	if es, _ := r.Stats().Stream(wire.StreamEvents); es.Ignored != 1 || es.Applied != 2 {
		t.Fatalf("events stats = %+v, want 2 applied and 1 ignored", es)
	}
}

func TestObsEventsWithADuplicateRecordIDGiveOneRow(t *testing.T) {
	e := newEnv(t)
	st := openStore(t, filepath.Join(t.TempDir(), "k.db"))
	ev := wire.ObsEvent{PCID: "pc1", At: t0, Kind: wire.ObsAgentOnline, Source: "agent", EventRecordID: "online-1", Payload: json.RawMessage(`{"version":"1"}`)}
	e.publish(wire.SubjectObs("pc1"), ev)
	e.publish(wire.SubjectObs("pc1"), ev) // the outbox published it again
	upd := ev
	upd.Kind, upd.EventRecordID = wire.ObsAgentUpdate, "update-1"
	e.publish(wire.SubjectObs("pc1"), upd)
	spoof := ev
	spoof.PCID, spoof.EventRecordID = "pc1", "spoof-1"
	e.publish(wire.SubjectObs("pc2"), spoof) // the payload names another PC than the subject: refused
	unnamed := ev
	unnamed.PCID, unnamed.EventRecordID = "", "unnamed-1"
	e.publish(wire.SubjectObs("pc2"), unnamed) // no pc_id: the subject's
	r := start(t, testOptions(e.js, st))
	caughtUp(t, r)
	if n := count(t, st, "timeline"); n != 3 {
		t.Fatalf("timeline rows = %d, want 3", n)
	}
	if os, _ := r.Stats().Stream(wire.StreamObs); os.Forged != 1 {
		t.Fatalf("obs stats = %+v, want 1 forged", os)
	}
	evs, err := st.Timeline(context.Background(), store.TimelineFilter{PCID: "pc1", Kind: wire.ObsAgentOnline})
	if err != nil || len(evs) != 1 || evs[0].StreamSeq != 1 || string(evs[0].Payload) != `{"version":"1"}` {
		t.Fatalf("pc1 agent_online = %+v (%v), want the first event only", evs, err)
	}
	if evs, _ := st.Timeline(context.Background(), store.TimelineFilter{PCID: "pc2"}); len(evs) != 1 || evs[0].EventRecordID != "unnamed-1" {
		t.Fatalf("pc2 events = %+v, want only the event without a pc_id published on obs.pc2", evs)
	}
}

func TestInventoryFullMarkerAndChangedSection(t *testing.T) {
	e := newEnv(t)
	st := openStore(t, filepath.Join(t.TempDir(), "k.db"))
	ctx := context.Background()
	pub := func(m wire.InventoryMessage) { e.publish(wire.SubjectInventory(m.PCID, m.Section), m) }
	pub(wire.InventoryMessage{PCID: "pc1", Section: wire.SectionHardware, CollectedAt: t0, Hash: "hw1", Data: json.RawMessage(`{"model":"X1"}`)})
	pub(wire.InventoryMessage{PCID: "pc1", Section: wire.SectionOS, CollectedAt: t0, Hash: "os1", Data: json.RawMessage(`{"name":"Windows 10"}`)})
	pub(wire.InventoryMessage{PCID: "pc1", Section: wire.SectionHardware, CollectedAt: t0.Add(24 * time.Hour), Hash: "hw1", Unchanged: true})
	pub(wire.InventoryMessage{PCID: "pc1", Section: wire.SectionOS, CollectedAt: t0.Add(24 * time.Hour), Hash: "os2", Data: json.RawMessage(`{"name":"Windows 11"}`)})
	r := start(t, testOptions(e.js, st))
	caughtUp(t, r)
	secs, err := st.InventoryLatest(ctx, "pc1")
	if err != nil || len(secs) != 2 {
		t.Fatalf("latest = %+v (%v), want hw and os", secs, err)
	}
	hw, os := secs[0], secs[1]
	if hw.Hash != "hw1" || !hw.CollectedAt.Equal(t0) || !hw.ConfirmedAt.Equal(t0.Add(24*time.Hour)) || string(hw.Data) != `{"model":"X1"}` {
		t.Errorf("hw after the marker = %+v: want the first collection, confirmed a day later", hw)
	}
	if os.Hash != "os2" || string(os.Data) != `{"name":"Windows 11"}` || !os.CollectedAt.Equal(t0.Add(24*time.Hour)) {
		t.Errorf("os after the change = %+v", os)
	}
	h, _ := st.InventoryHistory(ctx, "pc1", wire.SectionOS, 0)
	if len(h) != 2 || h[0].Hash != "os2" || h[1].Hash != "os1" {
		t.Errorf("os history = %+v, want os2 then os1", h)
	}
	if h, _ := st.InventoryHistory(ctx, "pc1", wire.SectionHardware, 0); len(h) != 1 {
		t.Errorf("hw history = %+v, want one entry (a marker is no change)", h)
	}
}

func TestAuditEventsKeyedByStreamSequence(t *testing.T) {
	e := newEnv(t)
	st := openStore(t, filepath.Join(t.TempDir(), "k.db"))
	var seqs []uint64
	for i := range 3 {
		ev := wire.AuditEvent{At: t0.Add(time.Duration(i) * time.Minute), Actor: "alice", Action: "job.create", Target: fmt.Sprint("job", i),
			Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}
		seqs = append(seqs, e.publish(wire.SubjectAudit(ev.Actor, ev.Action, ev.Target), ev))
	}
	r := start(t, testOptions(e.js, st))
	caughtUp(t, r)
	a, err := st.AuditList(context.Background(), 10)
	if err != nil || len(a) != 3 {
		t.Fatalf("audit = %+v (%v)", a, err)
	}
	for i, want := range []uint64{seqs[2], seqs[1], seqs[0]} {
		if a[i].Seq != want {
			t.Errorf("audit[%d].seq = %d, want %d (newest first)", i, a[i].Seq, want)
		}
	}
	if a[0].Target != "job2" || string(a[0].Payload) != `{"i":2}` || !a[0].At.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("newest audit entry = %+v", a[0])
	}
}

func heartbeat(pc, version string, depth int, at time.Time) wire.Heartbeat {
	return wire.Heartbeat{PCID: pc, At: at, AgentVersion: version, Hostname: "host-" + pc, OSFamily: "windows", OutboxDepth: depth, Groups: []string{"lab"}}
}

func TestHeartbeatsOfThreePCsBatchedNewestWins(t *testing.T) {
	e := newEnv(t)
	st := openStore(t, filepath.Join(t.TempDir(), "k.db"))
	ctx := context.Background()
	r := start(t, testOptions(e.js, st)) // flushes only when asked
	hbNC := e.b.Connect(t)
	now := time.Now().UTC()

	// Probe with undecodable heartbeats until one is counted: the
	// subscription is live, and Received (valid heartbeats only) is still 0.
	eventually(t, "the heartbeat subscription", func() (bool, string) {
		hbNC.Publish(wire.SubjectHeartbeat("probe"), []byte(`{bad`))
		hbNC.Flush()
		s := r.Stats().Heartbeats
		return s.DecodeErrors > 0 && s.Received == 0, fmt.Sprintf("%+v", s)
	})
	publish := func(subject string, h wire.Heartbeat) {
		b, _ := json.Marshal(h)
		hbNC.Publish(wire.SubjectHeartbeat(subject), b)
	}
	for i := 1; i <= 3; i++ {
		for _, pc := range []string{"pc1", "pc2", "pc3"} {
			publish(pc, heartbeat(pc, fmt.Sprint("v", i), i, now))
		}
	}
	// A payload naming another PC than its subject is refused: the
	// subject is what the sender's credential allows it.
	publish("pc4", heartbeat("pc1", "v9", 9, now))
	// A payload without a pc_id takes the subject's.
	publish("pc4", heartbeat("", "v9", 9, now))
	hbNC.Flush()
	eventually(t, "10 heartbeats received, 1 refused", func() (bool, string) {
		s := r.Stats().Heartbeats
		return s.Received == 10 && s.Forged == 1, fmt.Sprintf("%+v", s)
	})
	if p := r.Stats().Heartbeats.Pending; p != 4 {
		t.Fatalf("pending PCs = %d, want 4 (newest per PC kept in memory)", p)
	}
	n, err := r.FlushHeartbeats(ctx)
	if err != nil || n != 4 {
		t.Fatalf("flush wrote %d (%v), want 4 PCs in one transaction", n, err)
	}
	if s := r.Stats().Heartbeats; s.Flushes != 1 || s.Flushed != 4 {
		t.Fatalf("heartbeat stats = %+v, want one flush of 4 rows", s)
	}
	// The flush's lag is measured from receipt: positive, and the
	// maximum since start is at least the last one.
	if s := r.Stats().Heartbeats; s.LastLag <= 0 || s.MaxLag < s.LastLag {
		t.Fatalf("heartbeat lag = last %v max %v, want 0 < last <= max", s.LastLag, s.MaxLag)
	}
	lastSeen := map[string]time.Time{}
	for _, pc := range []string{"pc1", "pc2", "pc3"} {
		a, err := st.GetAgent(ctx, pc)
		if err != nil {
			t.Fatal(err)
		}
		if a.AgentVersion != "v3" || a.OutboxDepth != 3 || !a.Online || len(a.Groups) != 1 {
			t.Errorf("%s = %+v, want the third (newest) heartbeat, online", pc, a)
		}
		lastSeen[pc] = a.LastSeen
	}
	if a, err := st.GetAgent(ctx, "pc4"); err != nil || a.AgentVersion != "v9" || a.Hostname != "host-" {
		t.Errorf("pc4 = %+v (%v), want the heartbeat without a pc_id published on heartbeat.pc4", a, err)
	}

	// A heartbeat stamped an hour earlier by the agent's clock (a PC whose
	// clock is wrong): last_seen does not move back, and the PC stays
	// online, because liveness is judged on the backend's receive time.
	publish("pc1", heartbeat("pc1", "v4", 4, now.Add(-time.Hour)))
	hbNC.Flush()
	eventually(t, "the late heartbeat", func() (bool, string) {
		s := r.Stats().Heartbeats
		return s.Received == 11, fmt.Sprintf("%+v", s)
	})
	if _, err := r.FlushHeartbeats(ctx); err != nil {
		t.Fatal(err)
	}
	a, _ := st.GetAgent(ctx, "pc1")
	if a.LastSeen.Before(lastSeen["pc1"]) || !a.Online || a.AgentVersion != "v4" || !a.ReportedAt.Equal(now.Add(-time.Hour).Truncate(time.Millisecond)) {
		t.Fatalf("pc1 after a heartbeat with an old clock = %+v (last_seen before: %s)", a, lastSeen["pc1"])
	}
}

// TestHeartbeatCommandSigningLandsAndUpdates: an agent's signing state and
// command key ids travel from its heartbeat on NATS to agents in SQLite,
// and each flush writes the newest; a heartbeat of an agent too old to
// report them stores "" and [].
func TestHeartbeatCommandSigningLandsAndUpdates(t *testing.T) {
	e := newEnv(t)
	st := openStore(t, filepath.Join(t.TempDir(), "k.db"))
	ctx := context.Background()
	r := start(t, testOptions(e.js, st)) // flushes only when asked
	hbNC := e.b.Connect(t)
	eventually(t, "the heartbeat subscription", func() (bool, string) {
		hbNC.Publish(wire.SubjectHeartbeat("probe"), []byte(`{bad`))
		hbNC.Flush()
		s := r.Stats().Heartbeats
		return s.DecodeErrors > 0 && s.Received == 0, fmt.Sprintf("%+v", s)
	})
	var sent uint64
	send := func(b []byte) {
		t.Helper()
		if err := hbNC.Publish(wire.SubjectHeartbeat("pc1"), b); err != nil {
			t.Fatal(err)
		}
		hbNC.Flush()
		sent++
		eventually(t, fmt.Sprintf("heartbeat %d received", sent), func() (bool, string) {
			s := r.Stats().Heartbeats
			return s.Received == sent, fmt.Sprintf("%+v", s)
		})
		if n, err := r.FlushHeartbeats(ctx); err != nil || n != 1 {
			t.Fatalf("flush wrote %d (%v), want pc1", n, err)
		}
	}
	beat := func(state string, keys wire.KeyIDs) []byte {
		h := heartbeat("pc1", "v1", 0, time.Now().UTC())
		h.CommandSigning, h.CommandKeyFingerprints = state, keys
		b, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	check := func(step, state string, keys ...string) {
		t.Helper()
		a, err := st.GetAgent(ctx, "pc1")
		if err != nil {
			t.Fatal(err)
		}
		if a.CommandSigning != state || a.CommandKeyFingerprints == nil || fmt.Sprint(a.CommandKeyFingerprints) != fmt.Sprint(keys) {
			t.Errorf("%s: command_signing %q keys %#v, want %q %q", step, a.CommandSigning, a.CommandKeyFingerprints, state, keys)
		}
	}

	send(beat(wire.CommandSigningEnforced, wire.KeyIDs{"34750f98bd59fcfc", "9f86d081884c7d65"}))
	check("enforced", wire.CommandSigningEnforced, "34750f98bd59fcfc", "9f86d081884c7d65")
	// The ring became unreadable: the next heartbeat says so.
	send(beat(wire.CommandSigningFailClosed, nil))
	check("fail closed", wire.CommandSigningFailClosed)
	send(beat(wire.CommandSigningNoKeys, wire.KeyIDs{}))
	check("no keys", wire.CommandSigningNoKeys)
	// An agent from before the fields existed (no such keys in its JSON).
	send([]byte(`{"pc_id":"pc1","at":"` + time.Now().UTC().Format(time.RFC3339Nano) + `","agent_version":"0.9.0"}`))
	check("old agent", "")
	if a, _ := st.GetAgent(ctx, "pc1"); a.AgentVersion != "0.9.0" {
		t.Fatalf("pc1 = %+v, want the old agent's heartbeat", a)
	}
}

func TestHeartbeatsFlushedEverySecondWithoutBeingAsked(t *testing.T) {
	e := newEnv(t)
	st := openStore(t, filepath.Join(t.TempDir(), "k.db"))
	o := testOptions(e.js, st)
	o.HeartbeatFlush = time.Second
	r := start(t, o)
	hbNC := e.b.Connect(t)
	b, _ := json.Marshal(heartbeat("pc1", "v1", 0, time.Now().UTC()))
	eventually(t, "pc1 in agents", func() (bool, string) {
		hbNC.Publish(wire.SubjectHeartbeat("pc1"), b)
		_, err := st.GetAgent(context.Background(), "pc1")
		return err == nil, fmt.Sprint(err, r.Stats().Heartbeats)
	})
	if r.Stats().Heartbeats.Flushes == 0 {
		t.Fatal("no flush counted")
	}
}

// TestAcksOnlyAfterCommit holds SQLite's write lock from another
// connection: the projector receives the messages but cannot commit, and
// must not ack them (its lag stays at the full count) until it can.
func TestAcksOnlyAfterCommit(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(t.TempDir(), "k.db")
	st := openStore(t, path)
	ctx := context.Background()
	r := start(t, testOptions(e.js, st))
	name := projector.ConsumerName("kanade_proj_", wire.StreamResults)
	var cons jetstream.Consumer
	eventually(t, "the results consumer", func() (bool, string) {
		c, err := e.js.Consumer(ctx, wire.StreamResults, name)
		cons = c
		return err == nil, fmt.Sprint(err)
	})

	lockDB, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer lockDB.Close()
	conn, err := lockDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	locked := true
	defer func() {
		if locked {
			conn.ExecContext(ctx, "ROLLBACK")
		}
	}()

	const n = 300
	for i := range n {
		e.publish(wire.SubjectResultsLegacy("req"), result(fmt.Sprint("r", i), "e1", fmt.Sprint("pc", i), 0))
	}
	eventually(t, "all messages delivered to the projector", func() (bool, string) {
		info, err := cons.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		return info.Delivered.Stream == n, fmt.Sprintf("delivered %d", info.Delivered.Stream)
	})
	r.RefreshLag(ctx)
	rs, _ := r.Stats().Stream(wire.StreamResults)
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.AckFloor.Stream != 0 || rs.Lag != n || rs.Applied != 0 {
		t.Fatalf("while SQLite is locked: ack floor %d, lag %d, applied %d; want 0, %d, 0", info.AckFloor.Stream, rs.Lag, rs.Applied, n)
	}

	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	locked = false
	caughtUp(t, r)
	if got := count(t, st, "results"); got != n {
		t.Fatalf("results = %d, want %d", got, n)
	}
}

// TestStopMidStreamAndRestartLosesAndDoublesNothing cancels the projector
// while it is working through a stream, checks that everything acked is
// committed, then restarts it on the same database.
func TestStopMidStreamAndRestartLosesAndDoublesNothing(t *testing.T) {
	e := newEnv(t)
	st := openStore(t, filepath.Join(t.TempDir(), "k.db"))
	ctx := context.Background()
	const n = 6000
	publishResults(t, e.js, n, 3)

	o := testOptions(e.js, st)
	o.BatchSize = 100
	o.AckWait = time.Second // prefetched, unacked messages come back quickly
	r := start(t, o)
	eventually(t, "the projector to be mid-stream", func() (bool, string) {
		rs, _ := r.Stats().Stream(wire.StreamResults)
		return rs.Applied >= 1000, fmt.Sprint(rs.Applied)
	})
	r.stop()
	rows := count(t, st, "results")
	cons, err := e.js.Consumer(ctx, wire.StreamResults, projector.ConsumerName("kanade_proj_", wire.StreamResults))
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped after %d rows; ack floor %d, delivered %d", rows, info.AckFloor.Stream, info.Delivered.Stream)
	if rows >= n {
		t.Fatalf("the projector finished before it was stopped (%d rows); the test proves nothing", rows)
	}
	// Every acked message is committed: result i was published at
	// stream sequence i+1.
	if int64(info.AckFloor.Stream) > rows {
		t.Fatalf("ack floor %d is ahead of the %d committed rows", info.AckFloor.Stream, rows)
	}

	r = start(t, o)
	caughtUp(t, r)
	if got := count(t, st, "results"); got != n {
		t.Fatalf("results after restart = %d, want %d", got, n)
	}
	var total int
	for x := range 3 {
		c, err := st.ExecutionCounters(ctx, fmt.Sprint("exec", x))
		if err != nil {
			t.Fatal(err)
		}
		if c.Results != n/3 || c.Succeeded+c.Failed != c.Results {
			t.Errorf("exec%d counters = %+v, want %d results counted once", x, c, n/3)
		}
		total += c.Results
	}
	if total != n {
		t.Fatalf("counted %d results, want %d", total, n)
	}
}

// publishResults publishes n small results over execs executions,
// asynchronously with a bounded window.
func publishResults(t testing.TB, js jetstream.JetStream, n, execs int) {
	t.Helper()
	var futures []jetstream.PubAckFuture
	wait := func() {
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				t.Fatal(err)
			}
		}
		futures = futures[:0]
	}
	for i := range n {
		exec := fmt.Sprint("exec", i%execs)
		r := wire.ExecResult{ResultID: fmt.Sprintf("res-%07d", i), RequestID: "req-" + exec, ExecID: exec,
			PCID: fmt.Sprintf("PC-%05d", i%10000), ExitCode: i % 7 / 6, Stdout: "ok\n",
			StartedAt: t0.Add(time.Duration(i) * time.Millisecond), FinishedAt: t0.Add(time.Duration(i)*time.Millisecond + 300*time.Millisecond)}
		b, _ := json.Marshal(r)
		f, err := js.PublishAsync(wire.SubjectResultsLegacy(r.RequestID), b)
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
		if len(futures) == 1000 {
			wait()
		}
	}
	wait()
}

// TestRebuildFromStreamsGivesIdenticalRows is the acceptance test of the
// projection: project everything, fingerprint the tables, delete the
// database, start again and compare.
func TestRebuildFromStreamsGivesIdenticalRows(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "kanade.db")

	// Fill the streams.
	publishResults(t, e.js, 3000, 5)
	dup := result("res-0000007", "exec2", "PC-00007", 0) // a second copy of a known result_id
	e.publish(wire.SubjectResultsLegacy("x"), dup)
	for i := range 400 {
		e.publish(wire.SubjectEventsStarted("exec1", fmt.Sprint("PC-", i)), wire.EventStarted{
			ResultID: fmt.Sprintf("res-%07d", i*5+1), RequestID: "req-exec1", ExecID: "exec1", StartedAt: t0})
	}
	for i := range 300 {
		e.publish(wire.SubjectObs(fmt.Sprint("PC-", i%50)), wire.ObsEvent{At: t0.Add(time.Duration(i) * time.Second),
			Kind: wire.ObsAgentOnline, Source: "agent", EventRecordID: fmt.Sprint("rec-", i%250), Payload: json.RawMessage(`{"n":1}`)})
	}
	e.publish(wire.SubjectObs("PC-1"), []byte(`{"kind":"no_record_id","source":"agent"}`))
	for pc := range 30 {
		for _, sec := range wire.Sections() {
			id := fmt.Sprint("PC-", pc)
			e.publish(wire.SubjectInventory(id, sec), wire.InventoryMessage{CollectedAt: t0, Hash: sec + "1", Data: json.RawMessage(`{"v":1}`)})
			e.publish(wire.SubjectInventory(id, sec), wire.InventoryMessage{CollectedAt: t0.Add(time.Hour), Hash: sec + "1", Unchanged: true})
			if pc%3 == 0 {
				e.publish(wire.SubjectInventory(id, sec), wire.InventoryMessage{CollectedAt: t0.Add(2 * time.Hour), Hash: sec + "2", Data: json.RawMessage(`{"v":2}`)})
			}
		}
	}
	for i := range 200 {
		e.publish(wire.SubjectAudit("alice", "exec.create", fmt.Sprint("job", i)), wire.AuditEvent{At: t0, Actor: "alice", Action: "exec.create", Target: fmt.Sprint("job", i)})
	}
	e.publish(wire.SubjectResultsLegacy("x"), []byte(`garbage`))
	hbNC := e.b.Connect(t)
	sendHeartbeats := func() {
		for i := range 50 {
			h := heartbeat(fmt.Sprint("PC-", i), "1.2.3", 0, time.Now().UTC())
			h.CommandSigning = []string{wire.CommandSigningOff, wire.CommandSigningEnforced}[i%2]
			if i%2 == 1 {
				h.CommandKeyFingerprints = wire.KeyIDs{fmt.Sprintf("%016x", i)}
			}
			b, _ := json.Marshal(h)
			hbNC.Publish(wire.SubjectHeartbeat(fmt.Sprint("PC-", i)), b)
		}
		hbNC.Flush()
	}

	tables := []string{"results", "started", "exec_counters", "executions", "timeline", "inventory_latest", "inventory_history", "audit"}
	fingerprints := func(st *store.Store) map[string]store.Fingerprint {
		m := map[string]store.Fingerprint{}
		for _, tb := range append(tables, "agents") {
			f, err := st.Fingerprint(ctx, tb)
			if err != nil {
				t.Fatal(err)
			}
			m[tb] = f
		}
		return m
	}
	waitAgents := func(r *running, st *store.Store) {
		eventually(t, "50 agents", func() (bool, string) {
			sendHeartbeats()
			if _, err := r.FlushHeartbeats(ctx); err != nil {
				return false, err.Error()
			}
			n := count(t, st, "agents")
			return n == 50, fmt.Sprint(n)
		})
	}

	// First projection.
	st1, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if !st1.Fresh() {
		t.Fatal("a new database must be Fresh")
	}
	r := start(t, testOptions(e.js, st1))
	caughtUp(t, r)
	waitAgents(r, st1)
	before := fingerprints(st1)
	for tb, want := range map[string]int64{"results": 3000, "started": 400, "exec_counters": 5, "timeline": 251,
		"inventory_latest": 120, "inventory_history": 160, "audit": 200, "agents": 50, "executions": 5} {
		if before[tb].Rows != want {
			t.Errorf("%s has %d rows, want %d", tb, before[tb].Rows, want)
		}
	}
	c, _ := st1.ExecutionCounters(ctx, "exec2")
	if c.Results != 600 {
		t.Errorf("exec2 counted %d results, want 600 (the duplicate counted once)", c.Results)
	}
	r.stop()
	if err := st1.Close(); err != nil {
		t.Fatal(err)
	}

	// Delete the database and start again.
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	st2 := openStore(t, path)
	if !st2.Fresh() {
		t.Fatal("the recreated database must be Fresh")
	}
	r = start(t, testOptions(e.js, st2))
	caughtUp(t, r)
	if n := count(t, st2, "agents"); n != 0 {
		t.Fatalf("agents before any heartbeat = %d; heartbeats are not a stream, nothing to replay", n)
	}
	after := fingerprints(st2)
	for _, tb := range tables {
		if before[tb] != after[tb] {
			t.Errorf("%s: before %+v, after the rebuild %+v", tb, before[tb], after[tb])
		}
	}
	// agents refill from the next heartbeats.
	waitAgents(r, st2)
	if f, _ := st2.Fingerprint(ctx, "agents"); f != before["agents"] {
		t.Errorf("agents: before %+v, after new heartbeats %+v", before["agents"], f)
	}
}

// TestProjectorRecreatesADeletedConsumer deletes the durable consumer
// under a running projector: it must be recreated by its owner and
// projecting must go on.
func TestProjectorRecreatesADeletedConsumer(t *testing.T) {
	e := newEnv(t)
	st := openStore(t, filepath.Join(t.TempDir(), "k.db"))
	ctx := context.Background()
	o := testOptions(e.js, st)
	o.Streams = []string{wire.StreamAudit}
	r := start(t, o)
	e.publish(wire.SubjectAudit("a", "x", ""), wire.AuditEvent{Actor: "a", Action: "x"})
	caughtUp(t, r)
	if err := e.js.DeleteConsumer(ctx, wire.StreamAudit, "kanade_proj_audit"); err != nil {
		t.Fatal(err)
	}
	e.publish(wire.SubjectAudit("a", "y", ""), wire.AuditEvent{Actor: "a", Action: "y"})
	eventually(t, "the second audit event", func() (bool, string) {
		n := count(t, st, "audit")
		return n == 2, fmt.Sprint(n)
	})
}
