//go:build !windows

package natsauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/projector"
	"github.com/kanade-project/kanade/internal/release"
	"github.com/kanade-project/kanade/internal/store"
	"github.com/kanade-project/kanade/internal/wire"
)

// TestAgentRoleAllowsEveryAgentFlow runs every flow of the system with
// agents holding only their agent credential, the CLI side holding only the
// operator's, and the projector the backend's: commands live and replayed,
// broadcast and group commands, kills, output overflow, heartbeats into
// SQLite, ping and survey, inventory, config and group changes, and a
// self-update download. Each must work, and no agent may have met a single
// permission violation on the way: this is how the agent role's subject
// list was found, and what keeps it complete.
func TestAgentRoleAllowsEveryAgentFlow(t *testing.T) {
	srv := brokertest.StartWithRoles(t)
	ctx := context.Background()
	op := operator(t, srv)

	// The backend: the projector writes SQLite from what agents send.
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "kanade.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	backendJS, err := jetstream.New(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	proj, err := projector.New(projector.Options{JS: backendJS, Store: st, HeartbeatFlush: 100 * time.Millisecond, BatchWait: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	pctx, stopProj := context.WithCancel(ctx)
	projDone := make(chan struct{})
	go func() { defer close(projDone); proj.Run(pctx) }()
	t.Cleanup(func() { stopProj(); <-projDone })

	// A command for pc-c stored before pc-c ever connects: it must come
	// through replay. Its results are collected from before the publish.
	replayed, err := op.Start(ctx, fleetclient.Target{PC: "pc-c"}, wire.Command{Script: "echo replayed"})
	if err != nil {
		t.Fatal(err)
	}
	defer replayed.Close()

	// Host performance samples are core NATS, read by the backend.
	hostPerf, err := srv.Connect(t).SubscribeSync("host_perf.>")
	if err != nil {
		t.Fatal(err)
	}

	// Every key is enrolled before any traffic: a change of users reloads
	// the broker, which forgets the replies a client may still send
	// (allow_responses), and a reply in flight then would be refused.
	updaterSeed := srv.EnrollAgent(t, "pc-u")
	agents := map[string]*runningAgent{}
	for _, pc := range []string{"pc-a", "pc-b", "pc-c"} {
		agents[pc] = startAgent(t, srv, pc, srv.EnrollAgent(t, pc), agent.Config{HeartbeatInterval: 200 * time.Millisecond})
	}
	for pc := range agents {
		waitPing(t, op, pc)
	}

	t.Run("replayed command", func(t *testing.T) {
		r := collect(t, replayed, 1)[0]
		if r.PCID != "pc-c" || r.Stdout != "replayed\n" || r.ExitCode != 0 {
			t.Fatalf("result = %+v", r)
		}
	})
	t.Run("live command", func(t *testing.T) {
		r := runOn(t, op, fleetclient.Target{PC: "pc-a"}, wire.Command{Script: "echo live"}, 1)[0]
		if r.PCID != "pc-a" || r.Stdout != "live\n" || r.ExitCode != 0 {
			t.Fatalf("result = %+v", r)
		}
	})
	t.Run("broadcast", func(t *testing.T) {
		rs := runOn(t, op, fleetclient.Target{All: true}, wire.Command{Script: "echo all"}, 3)
		seen := map[string]bool{}
		for _, r := range rs {
			seen[r.PCID] = r.ExitCode == 0
		}
		if len(seen) != 3 || !seen["pc-a"] || !seen["pc-b"] || !seen["pc-c"] {
			t.Fatalf("results = %+v", rs)
		}
	})
	t.Run("output overflow", func(t *testing.T) {
		r := runOn(t, op, fleetclient.Target{PC: "pc-b"}, wire.Command{Script: "head -c 300000 /dev/zero | tr '\\0' x"}, 1)[0]
		if r.StdoutObject == "" {
			t.Fatalf("result = %+v, want stdout in the object store", r.ExitCode)
		}
		out, err := op.Output(ctx, r.StdoutObject)
		if err != nil || len(out) != 300000 {
			t.Fatalf("output: %d bytes, %v", len(out), err)
		}
	})
	t.Run("job checked against its pin and revocation", func(t *testing.T) {
		for _, kv := range [][3]string{{wire.BucketScriptCurrent, "backup", "2"}, {wire.BucketScriptStatus, "backup", wire.ScriptActive}} {
			b, err := op.JS.KeyValue(ctx, kv[0])
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.Put(ctx, kv[1], []byte(kv[2])); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			version string
			exit    int
		}{{"1", wire.ExitVersionPin}, {"2", 0}} {
			r := runOn(t, op, fleetclient.Target{PC: "pc-b"}, wire.Command{ID: "backup", Version: tc.version, Script: "echo job"}, 1)[0]
			if r.ExitCode != tc.exit {
				t.Errorf("version %s: result %+v, want exit %d", tc.version, r, tc.exit)
			}
		}
	})
	t.Run("kill", func(t *testing.T) {
		cmd := fleetclient.Prepare(wire.Command{Script: "sleep 300"})
		started, err := op.NC.SubscribeSync(wire.SubjectEventsStarted(cmd.ExecID, "pc-a"))
		if err != nil {
			t.Fatal(err)
		}
		ex, err := op.Start(ctx, fleetclient.Target{PC: "pc-a"}, cmd)
		if err != nil {
			t.Fatal(err)
		}
		defer ex.Close()
		if _, err := started.NextMsg(30 * time.Second); err != nil {
			t.Fatalf("no started event: %v", err)
		}
		if err := op.NC.Publish(wire.SubjectKill(ex.Command.ExecID), nil); err != nil {
			t.Fatal(err)
		}
		r := collect(t, ex, 1)[0]
		if r.ExitCode != wire.ExitKilled {
			t.Fatalf("result = %+v, want killed", r)
		}
	})
	t.Run("group command after a group change", func(t *testing.T) {
		groups, err := op.JS.KeyValue(ctx, wire.BucketAgentGroups)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := groups.Put(ctx, "pc-b", []byte(`{"groups":["lab"]}`)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "pc-b to join lab", func() bool {
			rep, err := configReport(op, "pc-b")
			return err == nil && len(rep.Groups) == 1 && rep.Groups[0] == "lab"
		})
		r := runOn(t, op, fleetclient.Target{Group: "lab"}, wire.Command{Script: "echo lab"}, 1)[0]
		if r.PCID != "pc-b" || r.Stdout != "lab\n" {
			t.Fatalf("result = %+v", r)
		}
	})
	t.Run("config change", func(t *testing.T) {
		cfg, err := op.JS.KeyValue(ctx, wire.BucketAgentConfig)
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range [][2]string{{wire.ConfigKeyGlobal, `{"inventory_jitter":"1s","host_perf_interval":"10s"}`}, {wire.ConfigKeyPC("pc-a"), `{"heartbeat_interval":"7s"}`}, {wire.ConfigKeyGroup("lab"), `{"inventory_interval":"2h"}`}} {
			if _, err := cfg.Put(ctx, kv[0], []byte(kv[1])); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "pc-a to apply its config", func() bool {
			rep, err := configReport(op, "pc-a")
			return err == nil && rep.Effective.HeartbeatInterval.D() == 7*time.Second && rep.Effective.InventoryJitter.D() == time.Second
		})
		waitFor(t, "pc-b to apply its group's config", func() bool {
			rep, err := configReport(op, "pc-b")
			return err == nil && rep.Effective.InventoryInterval.D() == 2*time.Hour
		})
	})
	t.Run("heartbeats reach SQLite", func(t *testing.T) {
		waitFor(t, "every agent in SQLite", func() bool {
			for pc := range agents {
				if a, err := st.GetAgent(ctx, pc); err != nil || a.AgentVersion != "1.0.0" {
					return false
				}
			}
			return true
		})
		hbs, err := op.Survey(ctx, time.Second)
		if err != nil || len(hbs) != 3 {
			t.Fatalf("survey: %d answers, %v", len(hbs), err)
		}
	})
	t.Run("inventory", func(t *testing.T) {
		m, err := op.NC.Request(wire.SubjectInventoryRefresh("pc-a"), nil, 5*time.Second)
		if err != nil || !strings.Contains(string(m.Data), `"queued":true`) {
			t.Fatalf("refresh: %v", err)
		}
		if _, err := op.NC.Request(wire.SubjectInventoryRefreshAll, nil, 5*time.Second); err != nil {
			t.Fatalf("fleet-wide refresh: %v", err)
		}
		waitFor(t, "pc-a's inventory in SQLite", func() bool {
			secs, err := st.InventoryLatest(ctx, "pc-a")
			return err == nil && len(secs) == 4
		})
	})
	t.Run("results and events reach SQLite", func(t *testing.T) {
		waitFor(t, "results projected", func() bool {
			rs, err := st.ListResults(ctx, store.ResultFilter{PCID: "pc-c"})
			return err == nil && len(rs) >= 2
		})
		ps := proj.Stats()
		for _, s := range ps.Streams {
			if s.Forged != 0 || s.DecodeErrors != 0 {
				t.Errorf("projector %s: %+v", s.Stream, s)
			}
		}
	})
	t.Run("host perf samples", func(t *testing.T) {
		m, err := hostPerf.NextMsg(30 * time.Second)
		if err != nil {
			t.Fatalf("no host_perf sample: %v", err)
		}
		var hp wire.HostPerf
		if err := json.Unmarshal(m.Data, &hp); err != nil || m.Subject != wire.SubjectHostPerf(hp.PCID) {
			t.Fatalf("host_perf %s: %s (%v)", m.Subject, m.Data, err)
		}
	})
	t.Run("self-update download", func(t *testing.T) {
		dir := t.TempDir()
		bin := filepath.Join(dir, "release.sh")
		if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 2.0.0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := release.Publish(ctx, backendJS, release.PublishOptions{Path: bin, Version: "2.0.0", OS: runtime.GOOS, Arch: runtime.GOARCH}); err != nil {
			t.Fatal(err)
		}
		exe := filepath.Join(dir, "agent", "kanade-agent")
		if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(exe, []byte("#!/bin/sh\necho 1.0.0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		up := startAgent(t, srv, "pc-u", updaterSeed, agent.Config{SelfUpdate: &agent.SelfUpdate{Exe: exe, HealthyAfter: 100 * time.Millisecond}})
		agents["pc-u"] = up
		waitPing(t, op, "pc-u")
		cfg, err := op.JS.KeyValue(ctx, wire.BucketAgentConfig)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cfg.Put(ctx, wire.ConfigKeyPC("pc-u"), []byte(`{"target_version":"2.0.0","target_version_jitter":"0s"}`)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the new binary swapped in", func() bool {
			b, err := os.ReadFile(exe)
			return err == nil && strings.Contains(string(b), "2.0.0")
		})
		if err := up.stop(); !errors.Is(err, agent.ErrRestart) && err != nil {
			t.Fatalf("agent after the swap: %v", err)
		}
	})

	for pc, a := range agents {
		if v := a.logs.violations(); len(v) > 0 {
			t.Errorf("agent %s met permission violations:\n%s", pc, strings.Join(v, "\n"))
		}
	}
}

func configReport(c *fleetclient.Client, pc string) (wire.ConfigReport, error) {
	var r wire.ConfigReport
	m, err := c.NC.Request(wire.SubjectAgentConfig(pc), nil, time.Second)
	if err != nil {
		return r, err
	}
	err = json.Unmarshal(m.Data, &r)
	return r, err
}
