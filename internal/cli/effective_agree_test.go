package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/cli"
	"github.com/kanade-project/kanade/internal/wire"
)

// TestEffectiveConfigAgreesWithTheAgent: `kanade config effective <pc>`
// and the agent's own answer on agents.<pc>.config resolve the same KV
// content to the same values and sources.
func TestEffectiveConfigAgreesWithTheAgent(t *testing.T) {
	srv := brokertest.Start(t)
	a, err := agent.New(agent.Config{ID: "agree-pc", NATSURLs: []string{srv.URL()}, DataDir: t.TempDir(), Version: "test",
		MaxConcurrent: 4, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	kanade := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := cli.Main(append([]string{"--server", srv.URL()}, args...), strings.NewReader(""), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	for _, args := range [][]string{
		{"agent", "groups", "set", "agree-pc", "alpha", "beta"},
		{"config", "set", "heartbeat_interval=45s", "target_version=2.0.0"},
		{"config", "set", "--group", "alpha", "inventory_interval=12h", "max_local_concurrent=2"},
		{"config", "set", "--group", "beta", "inventory_interval=6h"},
		{"config", "set", "--pc", "agree-pc", "target_version=2.1.0"},
	} {
		if code, out, errOut := kanade(args...); code != 0 {
			t.Fatalf("kanade %v = %d\n%s%s", args, code, out, errOut)
		}
	}

	nc := srv.Connect(t)
	var agentView wire.ConfigReport
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, err := nc.Request(wire.SubjectAgentConfig("agree-pc"), nil, time.Second)
		if err == nil && json.Unmarshal(m.Data, &agentView) == nil && agentView.Effective.TargetVersion == "2.1.0" &&
			agentView.Effective.InventoryInterval.D() == 6*time.Hour && agentView.Effective.MaxLocalConcurrent == 2 &&
			len(agentView.Groups) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent never applied the config: %+v", agentView)
		}
		time.Sleep(20 * time.Millisecond)
	}

	code, out, errOut := kanade("config", "effective", "agree-pc", "-o", "json")
	if code != 0 {
		t.Fatalf("config effective = %d: %s", code, errOut)
	}
	var cliView wire.ConfigReport
	if err := json.Unmarshal([]byte(out), &cliView); err != nil {
		t.Fatalf("config effective -o json is not a ConfigReport: %v\n%s", err, out)
	}
	// max_local_concurrent's default depends on the host the resolver
	// runs on; here it is set by group alpha, so both must say 2.
	if !reflect.DeepEqual(cliView.Effective, agentView.Effective) {
		t.Errorf("effective differs:\n cli   %+v\n agent %+v", cliView.Effective, agentView.Effective)
	}
	if !reflect.DeepEqual(cliView.Sources, agentView.Sources) {
		t.Errorf("sources differ:\n cli   %v\n agent %v", cliView.Sources, agentView.Sources)
	}
	if !reflect.DeepEqual(cliView.Groups, agentView.Groups) {
		t.Errorf("groups differ: cli %v, agent %v", cliView.Groups, agentView.Groups)
	}
	if len(agentView.Conflicts) != 1 || agentView.Conflicts[0].Field != "inventory_interval" || agentView.Conflicts[0].Winner != "beta" {
		t.Errorf("agent conflicts = %+v, want inventory_interval won by beta", agentView.Conflicts)
	}
	if !reflect.DeepEqual(cliView.Conflicts, agentView.Conflicts) {
		t.Errorf("conflicts differ: cli %+v, agent %+v", cliView.Conflicts, agentView.Conflicts)
	}
}
