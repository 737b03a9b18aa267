//go:build !windows

package agent_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/wire"
)

// assertKilled fails unless r is an operator's kill (not a timeout, not a
// normal exit).
func assertKilled(t *testing.T, r wire.ExecResult) {
	t.Helper()
	if r.ExitCode != wire.ExitKilled || r.TimedOut || !strings.Contains(r.Stderr, "killed by operator") {
		t.Fatalf("result = %+v, want killed by operator", r)
	}
}

// TestKillRightAfterAdmission: with one kill.* subscription per agent
// instead of a subscription per run, a kill published right after the
// command is not missed — neither one sent after the agent logged the
// admission, nor one sent back to back with the command (on the same
// connection, so it reaches the agent just after it, and may be handled
// before the command is admitted).
func TestKillRightAfterAdmission(t *testing.T) {
	srv := brokertest.Start(t)
	logs, c := startLoggedAgent(t, srv, "pc-ka", 4)
	// A missed kill shows up as a timeout, long before the result wait
	// gives up.
	long := wire.Command{Script: "sleep 60", TimeoutSecs: 20}

	t.Run("after the admission is logged", func(t *testing.T) {
		for range 5 {
			p := start(t, c, "pc-ka", long)
			waitFor(t, "the admission", func() bool { return logs.logged("command admitted", p.ex.Command.RequestID) })
			p.kill(t, c)
			assertKilled(t, p.result(t))
		}
	})

	t.Run("back to back with the command", func(t *testing.T) {
		for range 5 {
			cmd := fleetclient.Prepare(long)
			b, err := json.Marshal(cmd)
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.NC.SubscribeSync(wire.SubjectResultsOfRequest(cmd.RequestID))
			if err != nil {
				t.Fatal(err)
			}
			// Core publishes, no wait in between: the kill is in the
			// same write as the command.
			if err := c.NC.Publish(wire.SubjectCommandsPC("pc-ka"), b); err != nil {
				t.Fatal(err)
			}
			if err := c.NC.Publish(wire.SubjectKill(cmd.ExecID), nil); err != nil {
				t.Fatal(err)
			}
			m, err := res.NextMsg(30 * time.Second)
			if err != nil {
				t.Fatalf("no result for %s: %v", cmd.RequestID, err)
			}
			_ = res.Unsubscribe()
			var r wire.ExecResult
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatal(err)
			}
			assertKilled(t, r)
		}
	})
}

// killReceived reports whether the agent logged handling a kill of execID
// that reached runs runs.
func killReceived(logs *logBuffer, execID string, runs int) bool {
	want := fmt.Sprintf("exec_id=%s runs=%d", execID, runs)
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, `msg="kill received"`) && strings.Contains(line, want) {
			return true
		}
	}
	return false
}

// TestKillOfAnotherExecutionLeavesARunAlone: every agent now receives every
// kill; only the runs of the killed exec_id end.
func TestKillOfAnotherExecutionLeavesARunAlone(t *testing.T) {
	srv := brokertest.Start(t)
	logs, c := startLoggedAgent(t, srv, "pc-ko", 4)

	gate := filepath.Join(t.TempDir(), "go")
	keep := start(t, c, "pc-ko", wire.Command{Script: fmt.Sprintf("while [ ! -e %s ]; do sleep 0.05; done; echo survived", gate), TimeoutSecs: 60})
	victim := start(t, c, "pc-ko", wire.Command{Script: "sleep 60", TimeoutSecs: 60})
	for _, p := range []pending{keep, victim} {
		waitFor(t, "both runs", func() bool { return logs.logged("running command", p.ex.Command.RequestID) })
	}

	// Kills of exec_ids this agent does not run, one of them extending
	// the kept run's, then the victim's.
	keepID := keep.ex.Command.ExecID
	for _, other := range []string{"not-running-here", keepID + "x"} {
		if err := c.NC.Publish(wire.SubjectKill(other), nil); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the agent to handle the kill of "+other, func() bool { return killReceived(logs, other, 0) })
	}
	victim.kill(t, c)
	assertKilled(t, victim.result(t))
	if !killReceived(logs, victim.ex.Command.ExecID, 1) {
		t.Errorf("the victim's kill was not logged as reaching one run")
	}

	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := keep.result(t); r.ExitCode != 0 || r.Stdout != "survived\n" {
		t.Fatalf("the other run = %+v, want it to finish normally", r)
	}
}
