package scheduler_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/jobs"
	"github.com/kanade-project/kanade/internal/jobs/clock"
	"github.com/kanade-project/kanade/internal/scheduler"
	"github.com/kanade-project/kanade/internal/wire"
)

const waitLimit = 20 * time.Second

// t0 is the fake clock's start: Monday 2 March 2026, 10:00 UTC.
var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

const leaseTTL = 15 * time.Second

type env struct {
	t     *testing.T
	srv   *brokertest.Server
	js    jetstream.JetStream
	clk   *clock.Fake
	store *scheduler.Store
	fleet *fakeFleet
	cmds  *capture
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := brokertest.Start(t)
	js, err := jetstream.New(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	if err := jobs.Ensure(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	if err := scheduler.Ensure(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	cat, err := jobs.OpenCatalog(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	m, err := jobs.ParseStrict([]byte("id: patch\nversion: \"4\"\nexecute: {shell: sh, script: echo patched}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cat.Put(ctx, m, 0); err != nil {
		t.Fatal(err)
	}
	store, err := scheduler.OpenStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	v := &env{t: t, srv: srv, js: js, clk: clock.NewFake(t0), store: store, fleet: &fakeFleet{}}
	v.cmds = v.capture(wire.SubjectCommandsWild)
	return v
}

// fakeFleet is the backend's agents table.
type fakeFleet struct {
	mu  sync.Mutex
	pcs []string
}

func (f *fakeFleet) set(pcs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pcs = slices.Clone(pcs)
}

func (f *fakeFleet) PCs(_ context.Context, t jobs.Target) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, pc := range f.pcs {
		if t.All || slices.Contains(t.PCs, pc) {
			out = append(out, pc)
		}
	}
	return out, nil
}

// node is one server replica: a scheduler and its executor, each on its
// own connection, and the events the scheduler reported.
type node struct {
	s      *scheduler.Scheduler
	ex     *jobs.Executor
	nc     *nats.Conn
	events *recorder
	stop   func()
}

// newNode builds a replica; starter, when set, wraps its executor.
func (v *env) newNode(wrap func(scheduler.Starter) scheduler.Starter) *node {
	v.t.Helper()
	client, err := fleetclient.New(v.srv.Connect(v.t))
	if err != nil {
		v.t.Fatal(err)
	}
	ex, err := jobs.NewExecutor(testCtx(v.t), client, nil)
	if err != nil {
		v.t.Fatal(err)
	}
	ex.Clock = v.clk
	nc := v.srv.Connect(v.t)
	js, err := jetstream.New(nc)
	if err != nil {
		v.t.Fatal(err)
	}
	var starter scheduler.Starter = ex
	if wrap != nil {
		starter = wrap(ex)
	}
	n := &node{ex: ex, nc: nc, events: newRecorder(v.t)}
	n.s = scheduler.New(js, starter, v.fleet)
	n.s.Clock = v.clk
	n.s.LeaseTTL = leaseTTL
	n.s.ReconcileInterval = time.Minute
	n.s.RetryDelay = 5 * time.Second
	n.s.OnEvent = n.events.add
	return n
}

// start runs the node's scheduler until the returned stop (or cleanup).
func (n *node) start(t *testing.T) *node {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := n.s.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	n.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(n.stop)
	return n
}

// recorder keeps every event and lets tests wait for one.
type recorder struct {
	t       *testing.T
	mu      sync.Mutex
	events  []scheduler.Event
	changed chan struct{}
}

func newRecorder(t *testing.T) *recorder { return &recorder{t: t, changed: make(chan struct{})} }

func (r *recorder) add(e scheduler.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *recorder) all(ok func(scheduler.Event) bool) []scheduler.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []scheduler.Event
	for _, e := range r.events {
		if ok(e) {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) wait(what string, ok func(scheduler.Event) bool) scheduler.Event {
	r.t.Helper()
	deadline := time.After(waitLimit)
	for {
		r.mu.Lock()
		ch := r.changed
		for _, e := range r.events {
			if ok(e) {
				r.mu.Unlock()
				return e
			}
		}
		r.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			r.t.Fatalf("no %s event; got %+v", what, r.all(func(scheduler.Event) bool { return true }))
		}
	}
}

// waitTick waits until the leader evaluated every schedule at time at,
// having seen schedule id at revision rev or later.
func (r *recorder) waitTick(at time.Time, id string, rev uint64) {
	r.t.Helper()
	r.wait("tick at "+at.Format(time.RFC3339), func(e scheduler.Event) bool {
		return e.Kind == scheduler.EventTick && e.At.Equal(at) && (id == "" || e.Schedules[id] >= rev)
	})
}

func isKind(kind, id string) func(scheduler.Event) bool {
	return func(e scheduler.Event) bool { return e.Kind == kind && (id == "" || e.Schedule == id) }
}

// capture records commands in the order the broker delivered them.
type capture struct {
	t  *testing.T
	nc *nats.Conn
	ch chan *nats.Msg
}

func (v *env) capture(subject string) *capture {
	c := &capture{t: v.t, nc: v.srv.Connect(v.t), ch: make(chan *nats.Msg, 4096)}
	if _, err := c.nc.ChanSubscribe(subject, c.ch); err != nil {
		v.t.Fatal(err)
	}
	if err := c.nc.Flush(); err != nil {
		v.t.Fatal(err)
	}
	return c
}

type got struct {
	subject string
	cmd     wire.Command
}

func (c *capture) next() got {
	c.t.Helper()
	select {
	case m := <-c.ch:
		var cmd wire.Command
		if err := json.Unmarshal(m.Data, &cmd); err != nil {
			c.t.Fatal(err)
		}
		return got{m.Subject, cmd}
	case <-time.After(waitLimit):
		c.t.Fatal("no command arrived")
		return got{}
	}
}

// take returns the next n commands.
func (c *capture) take(n int) []got {
	c.t.Helper()
	out := make([]got, n)
	for i := range out {
		out[i] = c.next()
	}
	return out
}

// none asserts that no other command was delivered (after a flush round
// trip, every message sent before it is in the channel).
func (c *capture) none() {
	c.t.Helper()
	if err := c.nc.Flush(); err != nil {
		c.t.Fatal(err)
	}
	select {
	case m := <-c.ch:
		c.t.Fatalf("unexpected command on %s: %s", m.Subject, m.Data)
	default:
	}
}

func subjects(gs []got) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.subject)
	}
	slices.Sort(out)
	return out
}

// putSchedule stores a schedule strictly parsed from doc.
func (v *env) putSchedule(doc string) uint64 {
	v.t.Helper()
	s, err := scheduler.ParseStrict([]byte(doc))
	if err != nil {
		v.t.Fatal(err)
	}
	rev, err := v.store.Put(testCtx(v.t), s, 0)
	if err != nil {
		v.t.Fatal(err)
	}
	return rev
}
