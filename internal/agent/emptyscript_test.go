//go:build !windows

package agent_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/wire"
)

// emptyScriptCases are commands with nothing to run: the script missing,
// null, empty or only whitespace, with the shell absent (the platform
// default, which is not an error) or named.
var emptyScriptCases = []struct{ name, body string }{
	{"script missing, shell absent", `{"request_id":"es-missing","exec_id":"es-missing"}`},
	{"script null, shell absent", `{"request_id":"es-null","script":null}`},
	{"script empty, shell absent", `{"request_id":"es-empty","exec_id":"es-empty","script":""}`},
	{"script whitespace, shell absent", `{"request_id":"es-space","script":" \t\r\n \u00a0\u3000"}`},
	{"script missing, shell sh", `{"request_id":"es-sh","shell":"sh"}`},
	{"script empty, shell powershell", `{"request_id":"es-ps","shell":"powershell","script":""}`},
	{"script whitespace, shell cmd", `{"request_id":"es-cmd","shell":"cmd","script":"\r\n"}`},
	{"script empty, shell empty", `{"request_id":"es-shell-empty","shell":"","script":"   "}`},
}

// waitInvalid waits on sub for the one result of a refused command and
// checks it says the script is empty.
func waitInvalid(t *testing.T, sub *nats.Subscription, rid string) {
	t.Helper()
	m, err := sub.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatalf("%s: no result: %v", rid, err)
	}
	var r wire.ExecResult
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatal(err)
	}
	if r.RequestID != rid || r.ExitCode != wire.ExitInvalidCommand || !r.Skipped || !strings.Contains(r.Stderr, "script is empty") || !r.StartedAt.IsZero() {
		t.Fatalf("%s: result = %+v, want exit %d, skipped, never started, stderr saying the script is empty", rid, r, wire.ExitInvalidCommand)
	}
}

// TestEmptyScriptIsNeverRun: a command with nothing to run is answered
// with an error result (exit 122, "script is empty") and never admitted,
// started or spawned — whether it arrives live or is replayed from EXEC
// when the agent starts — and the agent goes on running commands,
// including one with the shell left to the platform default.
func TestEmptyScriptIsNeverRun(t *testing.T) {
	srv := brokertest.Start(t)
	nc := srv.Connect(t)
	js := srv.JetStream(t)
	started, err := nc.SubscribeSync(wire.SubjectEventsWild)
	if err != nil {
		t.Fatal(err)
	}

	// Replayed: stored in EXEC before the agent exists; it reads them at
	// start-up. Only the newest command per subject is replayed, so each
	// case has its own PC.
	type replayed struct {
		pc, rid string
		sub     *nats.Subscription
	}
	var replays []replayed
	for i, tc := range emptyScriptCases[:3] {
		var c struct {
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal([]byte(tc.body), &c); err != nil {
			t.Fatal(err)
		}
		rid := "replay-" + c.RequestID
		body := strings.Replace(tc.body, c.RequestID, rid, -1)
		sub, err := nc.SubscribeSync(wire.SubjectResultsOfRequest(rid))
		if err != nil {
			t.Fatal(err)
		}
		pc := "pc-replay-" + string(rune('a'+i))
		if _, err := js.Publish(context.Background(), wire.SubjectCommandsPC(pc), []byte(body)); err != nil {
			t.Fatal(err)
		}
		replays = append(replays, replayed{pc, rid, sub})
	}
	var replayLogs []*logBuffer
	for _, r := range replays {
		logs, _ := startLoggedAgent(t, srv, r.pc, 0)
		replayLogs = append(replayLogs, logs)
		waitInvalid(t, r.sub, r.rid)
	}

	// Live.
	logs, c := startLoggedAgent(t, srv, "pc-1", 0)
	for _, tc := range emptyScriptCases {
		t.Run(tc.name, func(t *testing.T) {
			var cmd struct {
				RequestID string `json:"request_id"`
			}
			if err := json.Unmarshal([]byte(tc.body), &cmd); err != nil {
				t.Fatal(err)
			}
			sub, err := nc.SubscribeSync(wire.SubjectResultsOfRequest(cmd.RequestID))
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			if err := nc.Publish(wire.SubjectCommandsPC("pc-1"), []byte(tc.body)); err != nil {
				t.Fatal(err)
			}
			waitInvalid(t, sub, cmd.RequestID)
		})
	}

	// Still running, and an absent shell is the platform default, not an
	// error.
	res := runOn(t, c, fleetclient.Target{PC: "pc-1"}, wire.Command{Script: "echo default shell"}, 1)[0]
	if res.ExitCode != 0 || res.Stdout != "default shell\n" {
		t.Fatalf("command after the refusals: %+v", res)
	}
	// The refused commands came first; had any of them been started, its
	// started event would precede the good command's.
	m, err := started.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatalf("no started event for the good command: %v", err)
	}
	var ev wire.EventStarted
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.RequestID != res.RequestID {
		t.Fatalf("a refused command was started: %s %s", m.Subject, m.Data)
	}
	for _, tc := range emptyScriptCases {
		rid := strings.Split(strings.Split(tc.body, `"request_id":"`)[1], `"`)[0]
		if logs.logged("command admitted", rid) {
			t.Errorf("%s was admitted for running", rid)
		}
	}
	for i, r := range replays {
		if replayLogs[i].logged("command admitted", r.rid) {
			t.Errorf("replayed %s was admitted for running", r.rid)
		}
	}
}
