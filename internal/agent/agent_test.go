//go:build !windows

package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/wire"
)

// startAgent runs an in-process agent against urls until the test ends.
func startAgent(t *testing.T, id string, urls ...string) { startAgentB(t, id, urls...) }

func startAgentB(t testing.TB, id string, urls ...string) {
	t.Helper()
	startAgentWith(t, agent.Config{ID: id, NATSURLs: urls})
}

// startAgentWith runs an in-process agent built from cfg, filling the
// test defaults (temp data dir, version "test", discarded logs).
func startAgentWith(t testing.TB, cfg agent.Config) {
	t.Helper()
	id := cfg.ID
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Version == "" {
		cfg.Version = "test"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent %s: %v", id, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("agent %s did not stop", id)
		}
	})
}

func client(t testing.TB, srv *brokertest.Server) *fleetclient.Client {
	t.Helper()
	c, err := fleetclient.New(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitPing polls until pc answers a ping or the deadline passes.
func waitPing(t *testing.T, c *fleetclient.Client, pc string) wire.Heartbeat {
	return waitPingB(t, c, pc)
}

func waitPingB(t testing.TB, c *fleetclient.Client, pc string) wire.Heartbeat {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		hb, err := c.Ping(ctx, pc)
		cancel()
		if err == nil {
			return hb
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent %s never answered ping: %v", pc, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runOn publishes cmd to t and collects n results (fails after 30 s).
func runOn(t *testing.T, c *fleetclient.Client, target fleetclient.Target, cmd wire.Command, n int) []wire.ExecResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ex, err := c.Start(ctx, target, cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	var out []wire.ExecResult
	for len(out) < n {
		select {
		case r := <-ex.Results:
			out = append(out, r)
		case <-ctx.Done():
			t.Fatalf("got %d of %d results: %+v", len(out), n, out)
		}
	}
	return out
}

func TestCommandToOnePC(t *testing.T) {
	srv := brokertest.Start(t)
	startAgent(t, "pc-1", srv.URL())
	startAgent(t, "pc-2", srv.URL())
	c := client(t, srv)
	waitPing(t, c, "pc-1")
	waitPing(t, c, "pc-2")

	res := runOn(t, c, fleetclient.Target{PC: "pc-1"}, wire.Command{Script: "echo hello; echo oops >&2; exit 3"}, 1)[0]
	if res.PCID != "pc-1" || res.Stdout != "hello\n" || res.Stderr != "oops\n" || res.ExitCode != 3 {
		t.Fatalf("result = %+v, want pc-1, stdout hello, stderr oops, exit 3", res)
	}
	if res.ResultID == "" || res.StartedAt.IsZero() || res.FinishedAt.Before(res.StartedAt) {
		t.Errorf("result ids/times not filled: %+v", res)
	}
	// The result is stored in RESULTS, not only seen on the wire.
	js := srv.JetStream(t)
	msg, err := js.Stream(context.Background(), wire.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	// A core subscriber can see the message before the stream has stored
	// it (the agent's PubAck waits for the store, this test's copy does
	// not): poll until it is there.
	var m *jetstream.RawStreamMsg
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err = msg.GetLastMsgForSubject(context.Background(), wire.SubjectResults(res.RequestID, res.PCID))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("result not in RESULTS: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if m.Header.Get(wire.HeaderMsgID) != res.ResultID {
		t.Errorf("Nats-Msg-Id = %q, want result_id %q", m.Header.Get(wire.HeaderMsgID), res.ResultID)
	}
}

func TestBroadcastReachesEveryAgent(t *testing.T) {
	srv := brokertest.Start(t)
	c := client(t, srv)
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("pc-%d", i)
		startAgent(t, id, srv.URL())
		waitPing(t, c, id)
	}
	results := runOn(t, c, fleetclient.Target{All: true}, wire.Command{Script: "echo hi"}, 3)
	seen := map[string]bool{}
	requestIDs := map[string]bool{}
	resultIDs := map[string]bool{}
	for _, r := range results {
		if r.ExitCode != 0 || r.Stdout != "hi\n" {
			t.Errorf("%s: %+v", r.PCID, r)
		}
		seen[r.PCID] = true
		requestIDs[r.RequestID] = true
		resultIDs[r.ResultID] = true
	}
	if len(seen) != 3 || len(requestIDs) != 1 || len(resultIDs) != 3 {
		t.Fatalf("pcs %v, request ids %v, result ids %v: want 3 PCs sharing one request_id with 3 distinct result_ids", seen, requestIDs, resultIDs)
	}
	hbs, err := c.Survey(context.Background(), 500*time.Millisecond)
	if err != nil || len(hbs) != 3 {
		t.Fatalf("survey = %d answers, %v; want 3", len(hbs), err)
	}
}

func TestTimeoutKillsGrandchildren(t *testing.T) {
	srv := brokertest.Start(t)
	startAgent(t, "pc-1", srv.URL())
	c := client(t, srv)
	waitPing(t, c, "pc-1")
	dir := t.TempDir()
	pids := filepath.Join(dir, "pids")
	script := fmt.Sprintf(`sh -c 'sleep 300 & echo $! >> %[1]s; sleep 300' & echo $! >> %[1]s; sleep 300`, pids)
	res := runOn(t, c, fleetclient.Target{PC: "pc-1"}, wire.Command{Script: script, TimeoutSecs: 1}, 1)[0]
	if res.ExitCode != wire.ExitKilled || !res.TimedOut || !strings.Contains(res.Stderr, "timed out") {
		t.Fatalf("result = %+v, want exit -1, timed_out and a timeout reason", res)
	}
	b, err := os.ReadFile(pids)
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		t.Fatalf("pid file = %q, want 2 pids", b)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, f := range fields {
		pid, _ := strconv.Atoi(f)
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("grandchild %d survived the timeout", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || !strings.HasPrefix(s[i+1:], " Z")
}

func TestLargeOutputIsCappedAndStored(t *testing.T) {
	srv := brokertest.Start(t)
	startAgent(t, "pc-1", srv.URL())
	c := client(t, srv)
	waitPing(t, c, "pc-1")
	// 20 MiB: "H" head, then "m" middle, then "T" tail.
	script := `printf 'HEAD'; head -c 20971512 /dev/zero | tr '\0' 'm'; printf 'TAIL'`
	res := runOn(t, c, fleetclient.Target{PC: "pc-1"}, wire.Command{Script: script}, 1)[0]
	if res.Stdout != "" || res.StdoutObject == "" {
		t.Fatalf("stdout inline %d bytes, object %q: want it in result_output", len(res.Stdout), res.StdoutObject)
	}
	out, err := c.Output(context.Background(), res.StdoutObject)
	if err != nil {
		t.Fatal(err)
	}
	omitted := 20<<20 - 8<<20
	marker := fmt.Sprintf("…[kanade: %d bytes omitted]…", omitted)
	if !strings.HasPrefix(out, "HEAD") || !strings.HasSuffix(out, "TAIL") || !strings.Contains(out, marker) {
		t.Fatalf("stored output (%d bytes) lacks head, tail or marker %q", len(out), marker)
	}
	if len(out) > 8<<20+100 {
		t.Fatalf("stored output is %d bytes, want capped near 8 MiB", len(out))
	}
}

func TestInvalidUTF8KeepsTheRest(t *testing.T) {
	srv := brokertest.Start(t)
	startAgent(t, "pc-1", srv.URL())
	c := client(t, srv)
	waitPing(t, c, "pc-1")
	res := runOn(t, c, fleetclient.Target{PC: "pc-1"}, wire.Command{Script: `printf 'before \203\300 after\n'`}, 1)[0]
	if !strings.Contains(res.Stdout, "before ") || !strings.Contains(res.Stdout, " after") || !strings.Contains(res.Stdout, "\uFFFD") {
		t.Fatalf("stdout = %q, want the text around the bad bytes kept", res.Stdout)
	}
}

func TestMalformedCommandsDoNotStopTheAgent(t *testing.T) {
	srv := brokertest.Start(t)
	startAgent(t, "pc-1", srv.URL())
	c := client(t, srv)
	waitPing(t, c, "pc-1")
	nc := srv.Connect(t)

	// Garbage: nothing to answer, but the agent must survive it.
	for _, junk := range []string{"", "not json", "[1,2]", `{"request_id": 5}`, `{"request_id":"a.b","script":"echo"}`} {
		if err := nc.Publish(wire.SubjectCommandsPC("pc-1"), []byte(junk)); err != nil {
			t.Fatal(err)
		}
	}
	// A recoverable request_id gets an error result naming the problem.
	for _, tc := range []struct{ name, body, want string }{
		{"empty script", `{"request_id":"bad-1","exec_id":"e1","script":"  "}`, "script is empty"},
		{"unknown shell", `{"request_id":"bad-2","script":"echo","shell":"fish"}`, "unknown shell"},
		{"wrong type", `{"request_id":"bad-3","script":"echo","timeout_secs":"soon"}`, "not a Command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub, err := nc.SubscribeSync(wire.SubjectResultsOfRequest(strings.Split(strings.Split(tc.body, `"request_id":"`)[1], `"`)[0]))
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			if err := nc.Publish(wire.SubjectCommandsPC("pc-1"), []byte(tc.body)); err != nil {
				t.Fatal(err)
			}
			m, err := sub.NextMsg(10 * time.Second)
			if err != nil {
				t.Fatalf("no error result: %v", err)
			}
			var r wire.ExecResult
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatal(err)
			}
			if r.ExitCode != wire.ExitInvalidCommand || !r.Skipped || !strings.Contains(r.Stderr, tc.want) {
				t.Fatalf("result = %+v, want exit %d, skipped, stderr mentioning %q", r, wire.ExitInvalidCommand, tc.want)
			}
		})
	}
	res := runOn(t, c, fleetclient.Target{PC: "pc-1"}, wire.Command{Script: "echo still alive"}, 1)[0]
	if res.Stdout != "still alive\n" {
		t.Fatalf("after malformed commands: %+v", res)
	}
}

func TestAgentStartedBeforeBrokerConnectsWhenItAppears(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	startAgent(t, "early", "nats://"+addr)

	srv := brokertest.StartBareAt(t, addr)
	brokertest.Bootstrap(t, srv)
	c := client(t, srv)
	hb := waitPing(t, c, "early")
	if hb.PCID != "early" || hb.AgentVersion != "test" {
		t.Fatalf("heartbeat = %+v", hb)
	}
	res := runOn(t, c, fleetclient.Target{PC: "early"}, wire.Command{Script: "echo late broker"}, 1)[0]
	if res.Stdout != "late broker\n" {
		t.Fatalf("result = %+v", res)
	}
}

func TestPingAndHeartbeat(t *testing.T) {
	srv := brokertest.Start(t)
	nc := srv.Connect(t)
	hbs, err := nc.SubscribeSync(wire.SubjectHeartbeat("pc-1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	startAgent(t, "pc-1", srv.URL())
	// The first heartbeat goes out at start, with a null CPU figure.
	m, err := hbs.NextMsg(20 * time.Second)
	if err != nil {
		t.Fatalf("no heartbeat: %v", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(m.Data, &raw); err != nil {
		t.Fatal(err)
	}
	if string(raw["agent_cpu_pct"]) != "null" {
		t.Errorf("first heartbeat agent_cpu_pct = %s, want null", raw["agent_cpu_pct"])
	}
	var hb wire.Heartbeat
	_ = json.Unmarshal(m.Data, &hb)
	if hb.PCID != "pc-1" || hb.AgentVersion != "test" || hb.OSFamily == "" || hb.Hostname == "" || hb.AgentRSSBytes == 0 {
		t.Errorf("heartbeat = %+v, want pc_id, version, os, hostname, rss", hb)
	}
	c := client(t, srv)
	p := waitPing(t, c, "pc-1")
	if p.PCID != "pc-1" || p.AgentCPUPct == nil {
		t.Errorf("ping = %+v, want a heartbeat with a CPU figure (second sample)", p)
	}
	if _, err := c.Ping(context.Background(), "nobody"); err == nil {
		t.Error("ping of an absent agent succeeded")
	}
}
