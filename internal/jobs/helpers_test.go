package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/jobs"
	"github.com/kanade-project/kanade/internal/jobs/clock"
	"github.com/kanade-project/kanade/internal/wire"
)

// waitLimit bounds every wait on the broker; reaching it fails the test.
const waitLimit = 20 * time.Second

// t0 is the fake clock's start: a Monday, 10:00 UTC.
var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

type env struct {
	t      *testing.T
	srv    *brokertest.Server
	js     jetstream.JetStream
	client *fleetclient.Client
	clk    *clock.Fake
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := brokertest.Start(t)
	nc := srv.Connect(t)
	client, err := fleetclient.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	if err := jobs.Ensure(ctx, client.JS, 1); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, srv: srv, js: client.JS, client: client, clk: clock.NewFake(t0)}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

// executor returns a new Executor (a new instance id, as after a server
// restart) on its own connection, driven by the env's fake clock.
func (v *env) executor(counter jobs.ResultCounter) *jobs.Executor {
	v.t.Helper()
	client, err := fleetclient.New(v.srv.Connect(v.t))
	if err != nil {
		v.t.Fatal(err)
	}
	ex, err := jobs.NewExecutor(testCtx(v.t), client, counter)
	if err != nil {
		v.t.Fatal(err)
	}
	ex.Clock = v.clk
	return ex
}

// run starts ex.Run and returns a function that stops it and waits for it
// to return (also called at cleanup).
func (v *env) run(ex *jobs.Executor) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := ex.Run(ctx); err != nil {
			v.t.Errorf("Run: %v", err)
		}
	}()
	stop = func() {
		cancel()
		<-done
	}
	v.t.Cleanup(stop)
	return stop
}

// kv opens a bucket.
func (v *env) kv(bucket string) jetstream.KeyValue {
	v.t.Helper()
	kv, err := v.js.KeyValue(testCtx(v.t), bucket)
	if err != nil {
		v.t.Fatal(err)
	}
	return kv
}

// capture records every message on subjects, in the order the broker
// delivered them, on one connection.
type capture struct {
	t  *testing.T
	nc *nats.Conn
	ch chan *nats.Msg
}

func (v *env) capture(subjects ...string) *capture {
	v.t.Helper()
	c := &capture{t: v.t, nc: v.srv.Connect(v.t), ch: make(chan *nats.Msg, 1024)}
	for _, s := range subjects {
		if _, err := c.nc.ChanSubscribe(s, c.ch); err != nil {
			v.t.Fatal(err)
		}
	}
	if err := c.nc.Flush(); err != nil {
		v.t.Fatal(err)
	}
	return c
}

func (c *capture) next() *nats.Msg {
	c.t.Helper()
	select {
	case m := <-c.ch:
		return m
	case <-time.After(waitLimit):
		c.t.Fatal("no message arrived")
		return nil
	}
}

func (c *capture) nextCommand() (string, wire.Command) {
	c.t.Helper()
	m := c.next()
	var cmd wire.Command
	if err := json.Unmarshal(m.Data, &cmd); err != nil {
		c.t.Fatalf("%s: %v", m.Subject, err)
	}
	return m.Subject, cmd
}

// none asserts that nothing more was delivered: after a flush round trip,
// every message the broker sent before it is already in the channel.
func (c *capture) none() {
	c.t.Helper()
	if err := c.nc.Flush(); err != nil {
		c.t.Fatal(err)
	}
	select {
	case m := <-c.ch:
		c.t.Fatalf("unexpected message on %s: %s", m.Subject, m.Data)
	default:
	}
}

// waitExec watches the execution record until ok accepts it.
func (v *env) waitExec(execID string, ok func(jobs.Execution) bool) jobs.Execution {
	v.t.Helper()
	ctx := testCtx(v.t)
	w, err := v.kv(jobs.BucketExecPlans).Watch(ctx, execID)
	if err != nil {
		v.t.Fatal(err)
	}
	defer w.Stop()
	var last jobs.Execution
	for {
		select {
		case ent := <-w.Updates():
			if ent == nil {
				continue
			}
			var x jobs.Execution
			if err := json.Unmarshal(ent.Value(), &x); err != nil {
				v.t.Fatal(err)
			}
			last = x
			if ok(x) {
				return x
			}
		case <-ctx.Done():
			v.t.Fatalf("exec %s never reached the expected state; last: %+v", execID, last)
		}
	}
}

// publishResult publishes an agent result into RESULTS and waits for the
// broker's acknowledgement.
func (v *env) publishResult(cmd wire.Command, pc string, exit int) {
	v.t.Helper()
	b, _ := json.Marshal(wire.ExecResult{
		ResultID: nuid.Next(), RequestID: cmd.RequestID, ExecID: cmd.ExecID, JobID: cmd.ID,
		PCID: pc, ExitCode: exit, StartedAt: t0, FinishedAt: t0,
	})
	if _, err := v.js.Publish(testCtx(v.t), wire.SubjectResults(cmd.RequestID, pc), b); err != nil {
		v.t.Fatal(err)
	}
}

// resultsStream counts results by reading the RESULTS stream: distinct
// result_ids of the execution, failed when the exit code is not 0.
type resultsStream struct{ js jetstream.JetStream }

func (r resultsStream) Counts(ctx context.Context, execID string) (total, failed int, err error) {
	s, err := r.js.Stream(ctx, wire.StreamResults)
	if err != nil {
		return 0, 0, err
	}
	st := s.CachedInfo().State
	seen := map[string]bool{}
	for seq := st.FirstSeq; st.Msgs > 0 && seq <= st.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return 0, 0, err
		}
		var res wire.ExecResult
		if json.Unmarshal(m.Data, &res) != nil || res.ExecID != execID || seen[res.ResultID] {
			continue
		}
		seen[res.ResultID] = true
		total++
		if res.ExitCode != 0 {
			failed++
		}
	}
	return total, failed, nil
}

func manifest(t *testing.T, id, version string) jobs.Manifest {
	t.Helper()
	m, err := jobs.ParseStrict([]byte("id: "+id+"\nversion: \""+version+"\"\nexecute: {shell: sh, script: echo hi, timeout: 30s}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func plan(t *testing.T, doc string) jobs.Plan {
	t.Helper()
	p, err := jobs.ParsePlan([]byte(strings.TrimSpace(doc)))
	if err != nil {
		t.Fatal(err)
	}
	return p
}
