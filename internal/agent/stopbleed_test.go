//go:build !windows

package agent_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/logtest"
	"github.com/kanade-project/kanade/internal/wire"
)

// logBuffer is a goroutine-safe log sink that tests can wait on.
type logBuffer struct{ logtest.Buffer }

// startLoggedAgent starts an agent whose debug log the test can wait on
// (and sees, when it fails), and waits until it answers a ping.
func startLoggedAgent(t *testing.T, srv *brokertest.Server, id string, maxConcurrent int) (*logBuffer, *fleetclient.Client) {
	t.Helper()
	logs := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	startAgentWith(t, agent.Config{ID: id, NATSURLs: []string{srv.URL()}, MaxConcurrent: maxConcurrent,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	c := client(t, srv)
	waitPing(t, c, id)
	return logs, c
}

// logged reports whether a line with message msg mentions requestID.
func (l *logBuffer) logged(msg, requestID string) bool {
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, `msg="`+msg+`"`) && strings.Contains(line, "request_id="+requestID) {
			return true
		}
	}
	return false
}

// waitFor polls cond every 20 ms until it holds or 30 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pending is a published command whose result the test collects later.
type pending struct {
	ex *fleetclient.Execution
}

func start(t *testing.T, c *fleetclient.Client, pc string, cmd wire.Command) pending {
	t.Helper()
	ex, err := c.Start(context.Background(), fleetclient.Target{PC: pc}, cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ex.Close)
	return pending{ex: ex}
}

func (p pending) result(t *testing.T) wire.ExecResult {
	t.Helper()
	select {
	case r := <-p.ex.Results:
		return r
	case <-time.After(30 * time.Second):
		t.Fatalf("no result for %s", p.ex.Command.RequestID)
	}
	return wire.ExecResult{}
}

func (p pending) kill(t *testing.T, c *fleetclient.Client) {
	t.Helper()
	if err := c.NC.Publish(wire.SubjectKill(p.ex.Command.ExecID), nil); err != nil {
		t.Fatal(err)
	}
}

func readPids(t *testing.T, path string) []int {
	t.Helper()
	b, _ := os.ReadFile(path)
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

func assertAllDead(t *testing.T, pids []int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d survived the kill", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestKillAtEveryStage(t *testing.T) {
	srv := brokertest.Start(t)
	logs, c := startLoggedAgent(t, srv, "pc-k", 1)
	dir := t.TempDir()

	t.Run("during jitter", func(t *testing.T) {
		p := start(t, c, "pc-k", wire.Command{Script: "echo never", JitterSecs: 3600})
		waitFor(t, "the kill latch", func() bool { return logs.logged("kill armed", p.ex.Command.RequestID) })
		p.kill(t, c)
		r := p.result(t)
		if r.ExitCode != wire.ExitKilled || !strings.Contains(r.Stderr, "killed by operator during the jitter wait") || r.Stdout != "" {
			t.Fatalf("result = %+v", r)
		}
	})

	// One slot: a long run holds it while a second command waits.
	pids := filepath.Join(dir, "pids")
	holder := start(t, c, "pc-k", wire.Command{Script: fmt.Sprintf(`sh -c 'sleep 300 & echo $! >> %[1]s; wait' & echo $! >> %[1]s; echo $$ >> %[1]s; wait`, pids)})
	waitFor(t, "the holder's tree", func() bool { return len(readPids(t, pids)) == 3 })

	t.Run("during the slot wait", func(t *testing.T) {
		p := start(t, c, "pc-k", wire.Command{Script: "echo never"})
		waitFor(t, "the kill latch", func() bool { return logs.logged("kill armed", p.ex.Command.RequestID) })
		p.kill(t, c)
		r := p.result(t)
		if r.ExitCode != wire.ExitKilled || !strings.Contains(r.Stderr, "while waiting for a run slot") {
			t.Fatalf("result = %+v", r)
		}
	})

	t.Run("mid-run with grandchildren", func(t *testing.T) {
		holder.kill(t, c)
		r := holder.result(t)
		if r.ExitCode != wire.ExitKilled || r.TimedOut || !strings.Contains(r.Stderr, "killed by operator") {
			t.Fatalf("result = %+v, want a kill, not a timeout", r)
		}
		assertAllDead(t, readPids(t, pids))
	})

	t.Run("during the retry backoff", func(t *testing.T) {
		marker := filepath.Join(dir, "attempts")
		p := start(t, c, "pc-k", wire.Command{Script: "echo x >> " + marker + "; exit 3", Retry: &wire.Retry{Max: 5, BackoffSecs: 3600}})
		waitFor(t, "the first attempt to finish", func() bool { return logs.logged("command finished", p.ex.Command.RequestID) })
		p.kill(t, c)
		r := p.result(t)
		if r.ExitCode != wire.ExitKilled || !strings.Contains(r.Stderr, "during the retry backoff after attempt 1") {
			t.Fatalf("result = %+v", r)
		}
		if b, _ := os.ReadFile(marker); strings.Count(string(b), "x") != 1 {
			t.Fatalf("script ran %d times, want 1 (a kill is never retried)", strings.Count(string(b), "x"))
		}
	})
}

func TestRetryPublishesOnlyTheFinalAttempt(t *testing.T) {
	srv := brokertest.Start(t)
	startAgent(t, "pc-r", srv.URL())
	c := client(t, srv)
	waitPing(t, c, "pc-r")
	counter := filepath.Join(t.TempDir(), "n")
	// Fails twice, then succeeds.
	script := fmt.Sprintf(`echo x >> %[1]s; n=$(wc -l < %[1]s); echo "attempt $n"; [ "$n" -ge 3 ]`, counter)
	p := start(t, c, "pc-r", wire.Command{Script: script, Retry: &wire.Retry{Max: 5}})
	r := p.result(t)
	if r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != "attempt 3" || r.Attempts != 3 || !strings.Contains(r.Stderr, "attempt 3 of 6; earlier: attempt 1: exit 1, attempt 2: exit 1") {
		t.Fatalf("result = %+v", r)
	}
	select {
	case extra := <-p.ex.Results:
		t.Fatalf("a second result was published: %+v", extra)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestGatesSkipWithTheirExitCodes(t *testing.T) {
	srv := brokertest.Start(t)
	startAgent(t, "pc-g", srv.URL())
	c := client(t, srv)
	waitPing(t, c, "pc-g")
	ctx := context.Background()
	js := srv.JetStream(t)
	cur, err := js.KeyValue(ctx, wire.BucketScriptCurrent)
	if err != nil {
		t.Fatal(err)
	}
	status, err := js.KeyValue(ctx, wire.BucketScriptStatus)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cur.Put(ctx, "patch", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	if _, err := status.Put(ctx, "bad-job", []byte(wire.ScriptRevoked)); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Minute)
	marker := filepath.Join(t.TempDir(), "ran")
	script := "echo ran >> " + marker

	for _, tc := range []struct {
		name string
		cmd  wire.Command
		code int
		want string
	}{
		{"version pin", wire.Command{ID: "patch", Version: "v1", Script: script}, wire.ExitVersionPin, `pinned to version "v2"`},
		{"deadline", wire.Command{ID: "patch", Version: "v2", Script: script, DeadlineAt: &past}, wire.ExitDeadlinePassed, "deadline"},
		{"revoked", wire.Command{ID: "bad-job", Version: "v1", Script: script}, wire.ExitRevoked, "REVOKED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := start(t, c, "pc-g", tc.cmd).result(t)
			if r.ExitCode != tc.code || !r.Skipped || !strings.Contains(r.Stderr, tc.want) {
				t.Fatalf("result = %+v, want skipped exit %d mentioning %q", r, tc.code, tc.want)
			}
		})
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a gated command ran")
	}
	// The right version of an unrevoked job runs.
	if r := start(t, c, "pc-g", wire.Command{ID: "patch", Version: "v2", Script: "echo ok"}).result(t); r.ExitCode != 0 || r.Skipped {
		t.Fatalf("pinned version did not run: %+v", r)
	}
	// Unrevoking takes effect on the next command.
	if _, err := status.Put(ctx, "bad-job", []byte(wire.ScriptActive)); err != nil {
		t.Fatal(err)
	}
	if r := start(t, c, "pc-g", wire.Command{ID: "bad-job", Script: "echo ok"}).result(t); r.ExitCode != 0 {
		t.Fatalf("unrevoked job did not run: %+v", r)
	}
}

// TestStrictStalenessFailsClosed: a command waits for a slot, the broker
// goes away, and the agent can only consult a cache older than the
// command's max_cache_age: it refuses with 127, and the result is delivered
// once the broker is back.
func TestStrictStalenessFailsClosed(t *testing.T) {
	srv := brokertest.Start(t)
	logs, c := startLoggedAgent(t, srv, "pc-s", 1)
	strict := &wire.Staleness{Mode: wire.StalenessStrict, MaxCacheAge: wire.Duration(time.Second)}

	// Warm the cache for the job.
	if r := start(t, c, "pc-s", wire.Command{ID: "inv", Version: "1", Script: "true", Staleness: strict}).result(t); r.ExitCode != 0 {
		t.Fatalf("warm-up: %+v", r)
	}
	gate := filepath.Join(t.TempDir(), "go")
	holder := start(t, c, "pc-s", wire.Command{Script: fmt.Sprintf("while [ ! -e %s ]; do sleep 0.05; done", gate)})
	waitFor(t, "the holder to take the only slot", func() bool { return logs.logged("running command", holder.ex.Command.RequestID) })
	waiting := start(t, c, "pc-s", wire.Command{ID: "inv", Version: "1", Script: "echo should-not-run", Staleness: strict})
	noCache := start(t, c, "pc-s", wire.Command{ID: "never-seen", Version: "1", Script: "echo should-not-run", Staleness: &wire.Staleness{Mode: wire.StalenessCached}})
	// Both are admitted and queued behind the holder before the outage.
	waitFor(t, "admissions", func() bool {
		return logs.logged("command admitted", waiting.ex.Command.RequestID) && logs.logged("command admitted", noCache.ex.Command.RequestID)
	})
	srv.Stop()
	time.Sleep(1500 * time.Millisecond) // the cache must be older than max_cache_age (1 s)
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// Both gates are decided while the broker is still away.
	waitFor(t, "both skips", func() bool {
		return logs.logged("command skipped", waiting.ex.Command.RequestID) && logs.logged("command skipped", noCache.ex.Command.RequestID)
	})
	srv.Restart()
	if r := holder.result(t); r.ExitCode != 0 {
		t.Fatalf("holder: %+v", r)
	}
	r := waiting.result(t)
	if r.ExitCode != wire.ExitStale || !r.Skipped || !strings.Contains(r.Stderr, "staleness strict") {
		t.Fatalf("strict result = %+v, want 127", r)
	}
	r = noCache.result(t)
	if r.ExitCode != wire.ExitStale || !strings.Contains(r.Stderr, "nothing is cached") {
		t.Fatalf("uncached result = %+v, want 127 fail closed", r)
	}
}
