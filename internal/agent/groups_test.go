//go:build !windows

package agent_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/bootstrap"
	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/retry"
	"github.com/kanade-project/kanade/internal/wire"
)

// report asks an agent what it believes.
func report(t *testing.T, c *fleetclient.Client, pc string) (wire.ConfigReport, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	m, err := c.NC.RequestWithContext(ctx, wire.SubjectAgentConfig(pc), nil)
	if err != nil {
		return wire.ConfigReport{}, err
	}
	var r wire.ConfigReport
	err = json.Unmarshal(m.Data, &r)
	return r, err
}

// waitReport polls the agent's report until cond holds.
func waitReport(t *testing.T, c *fleetclient.Client, pc, what string, cond func(wire.ConfigReport) bool) wire.ConfigReport {
	t.Helper()
	var last wire.ConfigReport
	waitFor(t, what, func() bool {
		r, err := report(t, c, pc)
		if err != nil {
			return false
		}
		last = r
		return cond(r)
	})
	return last
}

func kv(t *testing.T, js jetstream.JetStream, bucket string) jetstream.KeyValue {
	t.Helper()
	k, err := js.KeyValue(context.Background(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func put(t *testing.T, k jetstream.KeyValue, key, value string) {
	t.Helper()
	if _, err := k.Put(context.Background(), key, []byte(value)); err != nil {
		t.Fatal(err)
	}
}

func TestHeartbeatCadenceFollowsConfigForThatPCOnly(t *testing.T) {
	srv := brokertest.Start(t)
	c := client(t, srv)
	startAgent(t, "hb-x", srv.URL())
	startAgent(t, "hb-y", srv.URL())
	waitPing(t, c, "hb-x")
	waitPing(t, c, "hb-y")
	// Both start on the default 30 s cadence.
	waitReport(t, c, "hb-y", "hb-y synced", func(r wire.ConfigReport) bool { return r.Synced })

	beats := map[string]chan time.Time{"hb-x": make(chan time.Time, 100), "hb-y": make(chan time.Time, 100)}
	for pc, ch := range beats {
		sub, err := c.NC.Subscribe(wire.SubjectHeartbeat(pc), func(_ *nats.Msg) { ch <- time.Now() })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sub.Unsubscribe() })
	}
	put(t, kv(t, srv.JetStream(t), wire.BucketAgentConfig), wire.ConfigKeyPC("hb-x"), `{"heartbeat_interval":"1s"}`)
	r := waitReport(t, c, "hb-x", "hb-x to apply 1s", func(r wire.ConfigReport) bool { return r.Effective.HeartbeatInterval.D() == time.Second })
	if r.Sources["heartbeat_interval"] != "pc" {
		t.Errorf("source = %q, want pc", r.Sources["heartbeat_interval"])
	}
	applied := time.Now()
	// Three beats from X inside 3 new intervals (+ slack); none from Y.
	for i := range 3 {
		select {
		case <-beats["hb-x"]:
		case <-time.After(5 * time.Second):
			t.Fatalf("hb-x sent %d heartbeats in the new cadence, want 3", i)
		}
	}
	if d := time.Since(applied); d > 4500*time.Millisecond {
		t.Errorf("3 beats took %s at a 1 s cadence", d)
	}
	select {
	case <-beats["hb-y"]:
		t.Fatal("hb-y changed cadence too")
	default:
	}
	if r, _ := report(t, c, "hb-y"); r.Effective.HeartbeatInterval.D() != 30*time.Second {
		t.Errorf("hb-y interval = %s, want the default 30s", r.Effective.HeartbeatInterval)
	}
}

func TestGroupMembershipRoutesGroupCommands(t *testing.T) {
	srv := brokertest.Start(t)
	c := client(t, srv)
	startAgent(t, "g-x", srv.URL())
	startAgent(t, "g-y", srv.URL())
	waitPing(t, c, "g-x")
	waitPing(t, c, "g-y")
	groups := kv(t, srv.JetStream(t), wire.BucketAgentGroups)

	put(t, groups, "g-x", `{"groups":["canary","b","canary"]}`)
	r := waitReport(t, c, "g-x", "g-x to join canary", func(r wire.ConfigReport) bool { return slices.Contains(r.Groups, "canary") })
	if !slices.Equal(r.Groups, []string{"b", "canary"}) {
		t.Errorf("groups = %v, want sorted and de-duplicated [b canary]", r.Groups)
	}
	res := runOn(t, c, fleetclient.Target{Group: "canary"}, wire.Command{Script: "echo canary"}, 1)
	if res[0].PCID != "g-x" {
		t.Fatalf("group command answered by %s", res[0].PCID)
	}
	// Only g-x answers: a second result would be g-y.
	ex, err := c.Start(context.Background(), fleetclient.Target{Group: "canary"}, wire.Command{Script: "echo again"})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	timeout := time.After(2 * time.Second)
collect:
	for {
		select {
		case r := <-ex.Results:
			seen = append(seen, r.PCID)
		case <-timeout:
			break collect
		}
	}
	ex.Close()
	if !slices.Equal(seen, []string{"g-x"}) {
		t.Fatalf("canary command answered by %v, want only g-x", seen)
	}

	put(t, groups, "g-x", `{"groups":["b"]}`)
	waitReport(t, c, "g-x", "g-x to leave canary", func(r wire.ConfigReport) bool { return !slices.Contains(r.Groups, "canary") })
	ex, err = c.Start(context.Background(), fleetclient.Target{Group: "canary"}, wire.Command{Script: "echo gone"})
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	select {
	case r := <-ex.Results:
		t.Fatalf("%s still runs canary commands after leaving", r.PCID)
	case <-time.After(2 * time.Second):
	}
}

func TestBrokerRestartNeverBringsBackOlderConfig(t *testing.T) {
	srv := brokertest.Start(t)
	c := client(t, srv)
	startAgent(t, "hist", srv.URL())
	waitPing(t, c, "hist")
	cfg := kv(t, srv.JetStream(t), wire.BucketAgentConfig)
	for _, v := range []string{`{"target_version":"1.0.0","heartbeat_interval":"20s"}`, `{"target_version":"1.1.0","heartbeat_interval":"25s"}`, `{"target_version":"1.2.0","heartbeat_interval":"12s"}`} {
		put(t, cfg, wire.ConfigKeyGlobal, v)
	}
	before := waitReport(t, c, "hist", "the newest global", func(r wire.ConfigReport) bool { return r.Effective.TargetVersion == "1.2.0" })

	srv.Stop()
	srv.Restart()
	c = client(t, srv)
	// After the reconnect the agent re-reads everything (its revisions
	// are what it applied last, not history).
	waitPing(t, c, "hist")
	after := waitReport(t, c, "hist", "the report after the restart", func(r wire.ConfigReport) bool { return r.Synced })
	if after.Effective.TargetVersion != "1.2.0" || after.Effective.HeartbeatInterval.D() != 12*time.Second {
		t.Fatalf("after restart: %+v, want 1.2.0 and 12s", after.Effective)
	}
	if after.Revisions["agent_config/global"] != before.Revisions["agent_config/global"] {
		t.Fatalf("revision moved from %d to %d", before.Revisions["agent_config/global"], after.Revisions["agent_config/global"])
	}
}

func TestUnreadableBucketsKeepGroupsAndConfig(t *testing.T) {
	srv := brokertest.Start(t)
	c := client(t, srv)
	// Failed reads are retried only after 10 minutes, so the agent can
	// follow the recreated buckets below only through their change
	// notices (a slow CI once outlasted the default backoff).
	startAgentWith(t, agent.Config{ID: "keep", NATSURLs: []string{srv.URL()},
		Retry: retry.Policy{Min: 10 * time.Minute, Max: 10 * time.Minute}})
	waitPing(t, c, "keep")
	js := srv.JetStream(t)
	put(t, kv(t, js, wire.BucketAgentGroups), "keep", `{"groups":["ops"]}`)
	put(t, kv(t, js, wire.BucketAgentConfig), wire.ConfigKeyGroup("ops"), `{"max_local_concurrent":3}`)
	before := waitReport(t, c, "keep", "ops layer", func(r wire.ConfigReport) bool { return r.Effective.MaxLocalConcurrent == 3 })

	ctx := context.Background()
	for _, b := range []string{wire.BucketAgentGroups, wire.BucketAgentConfig} {
		if err := js.DeleteKeyValue(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	// A reconnect forces a full read against the missing buckets.
	srv.Stop()
	srv.Restart()
	c = client(t, srv)
	waitPing(t, c, "keep")
	r := waitReport(t, c, "keep", "a failed read", func(r wire.ConfigReport) bool { return r.SyncError != "" })
	if !slices.Equal(r.Groups, []string{"ops"}) || r.Effective.MaxLocalConcurrent != 3 {
		t.Fatalf("with the buckets gone: groups %v, max_local_concurrent %d; want them kept", r.Groups, r.Effective.MaxLocalConcurrent)
	}
	if res := runOn(t, c, fleetclient.Target{Group: "ops"}, wire.Command{Script: "echo still"}, 1); res[0].PCID != "keep" {
		t.Fatalf("group command: %+v", res)
	}
	if r.Revisions["agent_config/groups.ops"] != before.Revisions["agent_config/groups.ops"] {
		t.Errorf("revisions changed while unreadable: %v → %v", before.Revisions, r.Revisions)
	}

	// Buckets come back with new content: the agent follows (revisions of
	// the recreated buckets start again from 1).
	js = srv.JetStream(t)
	if _, err := bootstrap.Setup(ctx, js, bootstrap.Options{}); err != nil {
		t.Fatal(err)
	}
	put(t, kv(t, js, wire.BucketAgentGroups), "keep", `{"groups":["dev"]}`)
	waitReport(t, c, "keep", "the recreated buckets", func(r wire.ConfigReport) bool {
		return slices.Equal(r.Groups, []string{"dev"}) && r.Effective.MaxLocalConcurrent != 3
	})
}
