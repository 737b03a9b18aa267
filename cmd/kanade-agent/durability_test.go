//go:build linux

package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/wire"
)

// resultsInStream reads every ExecResult stored in RESULTS.
func resultsInStream(t *testing.T, js jetstream.JetStream) []wire.ExecResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, wire.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := info.State.Msgs
	if n == 0 {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []wire.ExecResult
	for uint64(len(out)) < n {
		batch, err := cons.Fetch(int(min(n-uint64(len(out)), 500)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			var r wire.ExecResult
			if err := json.Unmarshal(m.Data(), &r); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		if batch.Error() != nil {
			t.Fatal(batch.Error())
		}
	}
	return out
}

func streamMsgs(t *testing.T, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// TestBrokerRestartLosesNoResult: the broker stops while 200 short
// commands across 4 agents are finishing and comes back 10 s later; every
// one of the 800 results is in RESULTS exactly once by result_id.
func TestBrokerRestartLosesNoResult(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection with a 10 s outage")
	}
	bin := sharedAgent(t)
	srv := brokertest.Start(t)
	c, err := fleetclient.New(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	const agents, commands = 4, 200
	var procs []*agentProc
	for i := range agents {
		id := fmt.Sprintf("fleet-%d", i)
		procs = append(procs, newAgentProc(t, bin, id, srv.URL()))
		waitPing(t, c, id, 20*time.Second)
	}
	for i := range commands {
		cmd := fleetclient.Prepare(wire.Command{Script: fmt.Sprintf("sleep 0.02; echo %d", i)})
		if err := c.Publish(context.Background(), fleetclient.Target{All: true}, cmd); err != nil {
			t.Fatal(err)
		}
	}
	// Stop the broker once results are flowing but most are still to come.
	js := srv.JetStream(t)
	deadline := time.Now().Add(30 * time.Second)
	for streamMsgs(t, js, wire.StreamResults) < 40 {
		if time.Now().After(deadline) {
			t.Fatal("no results before the outage")
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Stop()
	time.Sleep(10 * time.Second) // the outage under test
	srv.Restart()

	js = srv.JetStream(t)
	deadline = time.Now().Add(90 * time.Second)
	for streamMsgs(t, js, wire.StreamResults) < agents*commands {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d results after the restart", streamMsgs(t, js, wire.StreamResults), agents*commands)
		}
		time.Sleep(50 * time.Millisecond)
	}
	results := resultsInStream(t, js)
	byID := map[string]int{}
	perPC := map[string]int{}
	for _, r := range results {
		byID[r.ResultID]++
		perPC[r.PCID]++
		if r.ExitCode != 0 {
			t.Errorf("%s: exit %d: %s", r.PCID, r.ExitCode, r.Stderr)
		}
	}
	if len(results) != agents*commands || len(byID) != agents*commands {
		t.Fatalf("RESULTS holds %d messages with %d distinct result_ids, want %d of each", len(results), len(byID), agents*commands)
	}
	for pc, n := range perPC {
		if n != commands {
			t.Errorf("%s: %d results, want %d", pc, n, commands)
		}
	}
	for _, p := range procs {
		if !p.running() {
			t.Errorf("%s exited during the outage", p.id)
		}
	}
}

// TestKill9MidRunReportsOutcomeUnknown: the agent is kill -9ed while a
// 30 s script runs; after a restart that command is not launched again,
// an "outcome unknown" result arrives, and a result queued before the kill
// (while the broker was away) is delivered.
func TestKill9MidRunReportsOutcomeUnknown(t *testing.T) {
	bin := sharedAgent(t)
	srv := brokertest.Start(t)
	c, err := fleetclient.New(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	p := newAgentProc(t, bin, "crashy", srv.URL())
	waitPing(t, c, "crashy", 20*time.Second)
	dir := t.TempDir()
	launches := filepath.Join(dir, "launches")
	pidFile := filepath.Join(dir, "sleeper")
	t.Cleanup(func() {
		// The orphaned script of the killed agent.
		for _, pid := range readPidFile(pidFile) {
			killGroup(pid)
		}
	})

	long := fleetclient.Prepare(wire.Command{Script: fmt.Sprintf("echo x >> %s; echo $$ > %s; sleep 30", launches, pidFile)})
	quick := fleetclient.Prepare(wire.Command{Script: "sleep 1; echo queued-before-the-kill"})
	for _, cmd := range []wire.Command{long, quick} {
		if err := c.Publish(context.Background(), fleetclient.Target{PC: "crashy"}, cmd); err != nil {
			t.Fatal(err)
		}
	}
	p.waitLog(`msg="running command"`, "request_id="+quick.RequestID)
	srv.Stop()
	// The quick result is now written to the outbox and cannot be sent.
	p.waitLog(`msg="result queued"`, "request_id="+quick.RequestID)
	p.kill9()
	srv.Restart()
	p.start()

	js := srv.JetStream(t)
	deadline := time.Now().Add(60 * time.Second)
	var got map[string]wire.ExecResult
	for {
		got = map[string]wire.ExecResult{}
		for _, r := range resultsInStream(t, js) {
			got[r.RequestID] = r
		}
		if len(got) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("results after restart: %+v", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := got[quick.RequestID]; r.ExitCode != 0 || r.Stdout != "queued-before-the-kill\n" {
		t.Errorf("queued result = %+v", r)
	}
	r := got[long.RequestID]
	if r.ExitCode != wire.ExitOutcomeUnknown || !r.Skipped || !strings.Contains(r.Stderr, "outcome unknown") {
		t.Errorf("interrupted command result = %+v, want exit %d outcome unknown", r, wire.ExitOutcomeUnknown)
	}
	// The replay after the restart offered the newest command again; the
	// ledger refused it. The long script was launched exactly once.
	p.waitLog(`msg="duplicate command ignored"`, "source=replay")
	if b, _ := os.ReadFile(launches); strings.Count(string(b), "x") != 1 {
		t.Fatalf("long command launched %d times, want 1", strings.Count(string(b), "x"))
	}
}

// TestOfflineAgentReplaysOnlyTheNewest: while the agent is down,
// commands.all receives v1 then v2 of a job; when it comes back it runs only
// v2, once, and a further restart does not run v2 again.
func TestOfflineAgentReplaysOnlyTheNewest(t *testing.T) {
	bin := sharedAgent(t)
	srv := brokertest.Start(t)
	c, err := fleetclient.New(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	p := newAgentProc(t, bin, "laptop", srv.URL())
	waitPing(t, c, "laptop", 20*time.Second)
	p.stop()

	ran := filepath.Join(t.TempDir(), "ran")
	var v2 wire.Command
	for _, v := range []string{"v1", "v2"} {
		cmd := fleetclient.Prepare(wire.Command{ID: "job", Script: fmt.Sprintf("echo %s >> %s", v, ran)})
		if err := c.Publish(context.Background(), fleetclient.Target{All: true}, cmd); err != nil {
			t.Fatal(err)
		}
		v2 = cmd
	}
	sub, err := c.NC.SubscribeSync(wire.SubjectResultsOfRequest(v2.RequestID))
	if err != nil {
		t.Fatal(err)
	}
	p.start()
	if _, err := sub.NextMsg(30 * time.Second); err != nil {
		t.Fatalf("no result for v2 after coming back: %v", err)
	}
	p.stop()
	p.start()
	p.waitLog(`msg="duplicate command ignored"`, "request_id="+v2.RequestID, "source=replay")
	waitPing(t, c, "laptop", 20*time.Second)
	b, _ := os.ReadFile(ran)
	if string(b) != "v2\n" {
		t.Fatalf("runs = %q, want only v2, once", b)
	}
}

// TestHugeOutputStaysInBudget: 20 MiB of stdout is published with its
// output in result_output, and the agent's peak RSS stays under 64 MiB.
func TestHugeOutputStaysInBudget(t *testing.T) {
	bin := sharedAgent(t)
	srv := brokertest.Start(t)
	c, err := fleetclient.New(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	p := newAgentProc(t, bin, "chatty", srv.URL())
	waitPing(t, c, "chatty", 20*time.Second)
	r := runOne(t, c, "chatty", wire.Command{Script: `printf HEAD; head -c 20971520 /dev/zero | tr '\0' 'z'; printf TAIL`}, 60*time.Second)
	if r.StdoutObject == "" || r.ExitCode != 0 {
		t.Fatalf("result = %+v, want the output in result_output", r)
	}
	out, err := c.Output(context.Background(), r.StdoutObject)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "HEAD") || !strings.HasSuffix(out, "TAIL") || !strings.Contains(out, "bytes omitted") {
		t.Fatalf("stored output lacks head, tail or marker (%d bytes)", len(out))
	}
	if peak := vmHWM(t, p.cmd.Process.Pid); peak >= 64<<20 {
		t.Fatalf("agent peak RSS %d MiB, budget 64 MiB", peak>>20)
	} else {
		t.Logf("agent peak RSS during a 20 MiB output: %.1f MiB", float64(peak)/(1<<20))
	}
}

func readPidFile(path string) []int {
	b, _ := os.ReadFile(path)
	var out []int
	for _, f := range strings.Fields(string(b)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil {
			out = append(out, pid)
		}
	}
	return out
}
