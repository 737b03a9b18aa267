package api_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/apiauth"
	"github.com/kanade-project/kanade/internal/store"
	"github.com/kanade-project/kanade/internal/wire"
)

// errMessage is the message of a JSON error answer.
func errMessage(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

// badRequest is a request the endpoint must refuse with 400 bad_request
// and a message naming what was wrong.
type badRequest struct {
	name, path, want string
}

func checkBadRequests(t *testing.T, r *rig, token string, cases []badRequest) {
	t.Helper()
	for _, tc := range cases {
		t.Run("400 "+tc.name, func(t *testing.T) {
			status, body := r.do("GET", tc.path, token, nil)
			if status != 400 || errCode(body) != "bad_request" || !strings.Contains(errMessage(body), tc.want) {
				t.Fatalf("GET %s: %d %v, want 400 bad_request naming %q", tc.path, status, body, tc.want)
			}
		})
	}
}

func TestFleetHealthOverHTTP(t *testing.T) {
	r := newProjectedRig(t)
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	r.st.SetClock(func() time.Time { return now })
	hb := func(pc, os, version string, seen time.Time) store.Heartbeat {
		return store.Heartbeat{Heartbeat: wire.Heartbeat{PCID: pc, At: seen, OSFamily: os, AgentVersion: version}, SeenAt: seen}
	}
	// Heartbeats straight into the projection: a stale agent is one whose
	// last heartbeat the backend received a week ago.
	if err := r.st.Tx(context.Background(), func(tx *store.Tx) error {
		return tx.UpsertHeartbeats([]store.Heartbeat{
			hb("win-1", "windows", "1.1.0", now.Add(-5*time.Second)),
			hb("win-2", "windows", "1.0.0", now.Add(-2*time.Hour)),
			hb("win-3", "windows", "1.0.0", now.Add(-8*24*time.Hour)),
			hb("lin-1", "linux", "1.1.0", now.Add(-10*time.Second)),
			hb("lin-2", "linux", "1.1.0", now.Add(-7*24*time.Hour)),
			hb("mac-1", "darwin", "1.0.0", now.Add(-time.Second)),
		})
	}); err != nil {
		t.Fatal(err)
	}
	status, body := r.do("GET", "/api/health/fleet", r.token(apiauth.RoleViewer), nil)
	if status != 200 {
		t.Fatalf("GET /api/health/fleet: %d %v", status, body)
	}
	for _, tc := range []struct {
		field string
		want  any
	}{
		{"online", 3.0},
		{"offline", 3.0},
		{"stale", 2.0},
		{"total", 6.0},
		{"nats", "CONNECTED"},
		{"by_os", map[string]any{"windows": 3.0, "linux": 2.0, "darwin": 1.0}},
		{"by_version", []any{
			map[string]any{"agent_version": "1.0.0", "agents": 3.0, "online": 1.0},
			map[string]any{"agent_version": "1.1.0", "agents": 3.0, "online": 2.0},
		}},
	} {
		t.Run(tc.field, func(t *testing.T) {
			if got := fmt.Sprint(body[tc.field]); got != fmt.Sprint(tc.want) {
				t.Fatalf("%s = %s, want %s", tc.field, got, fmt.Sprint(tc.want))
			}
		})
	}
	if status, body := r.do("GET", "/api/health/fleet", "", nil); status != 401 {
		t.Fatalf("without a token: %d %v", status, body)
	}
}

func TestAuditFiltersAndPagesOverHTTP(t *testing.T) {
	r := newProjectedRig(t)
	viewer := r.token(apiauth.RoleViewer)
	// Twelve audit events published to the AUDIT stream as the API does;
	// the projector keys them by stream sequence, 1 to 12 in this order.
	type entry struct{ actor, action, target string }
	var evs []entry
	for i := range 12 {
		e := entry{[]string{"token", "alice"}[i%2], []string{"run", "kill", "revoke"}[i%3], fmt.Sprintf("x%d", i%4)}
		evs = append(evs, e)
		publishJSON(t, r, wire.SubjectAudit(e.actor, e.action, e.target), wire.AuditEvent{At: time.Now().UTC(), Actor: e.actor, Action: e.action, Target: e.target})
	}
	waitFor(t, "every audit event projected", func() bool {
		_, body := r.do("GET", "/api/audit?limit=1000", viewer, nil)
		list, _ := body["audit"].([]any)
		return len(list) == len(evs)
	})
	// page fetches one page and returns its seqs and next.
	page := func(t *testing.T, params string) ([]string, string) {
		t.Helper()
		status, body := r.do("GET", "/api/audit?"+params, viewer, nil)
		if status != 200 {
			t.Fatalf("GET /api/audit?%s: %d %v", params, status, body)
		}
		var seqs []string
		for _, e := range body["audit"].([]any) {
			seqs = append(seqs, fmt.Sprint(e.(map[string]any)["seq"]))
		}
		return seqs, body["next"].(string)
	}
	// want is the seqs a filter selects, newest first.
	want := func(action, target, actor string) []string {
		var out []string
		for i := len(evs) - 1; i >= 0; i-- {
			e := evs[i]
			if (action == "" || e.action == action) && (target == "" || e.target == target) && (actor == "" || e.actor == actor) {
				out = append(out, fmt.Sprint(i+1))
			}
		}
		return out
	}
	for _, tc := range []struct {
		name, action, target, actor string
		limit                       int
	}{
		{"everything in pages of 5", "", "", "", 5},
		{"one action in pages of 1", "kill", "", "", 1},
		{"action and target: who ran x0", "run", "x0", "", 1},
		{"actor in pages of 2", "", "", "alice", 2},
		{"all three", "revoke", "x2", "token", 10},
		{"exact match only", "ru", "", "", 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			params := url.Values{"limit": {fmt.Sprint(tc.limit)}}
			for k, v := range map[string]string{"action": tc.action, "target": tc.target, "actor": tc.actor} {
				if v != "" {
					params.Set(k, v)
				}
			}
			var got []string
			for pages := 0; ; pages++ {
				if pages > len(evs) {
					t.Fatal("next does not advance")
				}
				seqs, next := page(t, params.Encode())
				if len(seqs) > tc.limit {
					t.Fatalf("%d entries with limit %d", len(seqs), tc.limit)
				}
				got = append(got, seqs...)
				if next == "" {
					break
				}
				params.Set("before", next)
			}
			if w := want(tc.action, tc.target, tc.actor); !slices.Equal(got, w) {
				t.Fatalf("seqs %v, want %v", got, w)
			}
		})
	}

	// What the dashboard does after a change: find its audit entry.
	t.Run("the entry of a change made through the API", func(t *testing.T) {
		if status, body := r.do("POST", "/api/jobs/patch-9/revoke", r.token(apiauth.RoleOperator), nil); status != 200 {
			t.Fatalf("revoke: %d %v", status, body)
		}
		waitFor(t, "the revoke's audit entry", func() bool {
			seqs, _ := page(t, "action=revoke&target=patch-9&limit=1")
			return len(seqs) == 1
		})
		_, body := r.do("GET", "/api/audit?action=revoke&target=patch-9&limit=1", viewer, nil)
		e := body["audit"].([]any)[0].(map[string]any)
		if e["actor"] != "tester-operator" || e["seq"] != float64(len(evs)+1) || body["next"] != "" {
			t.Fatalf("entry %v, next %v", e, body["next"])
		}
	})

	checkBadRequests(t, r, viewer, []badRequest{
		{"before not a number", "/api/audit?before=abc", "before must be an audit seq"},
		{"before zero", "/api/audit?before=0", "before must be an audit seq"},
		{"before negative", "/api/audit?before=-3", "before must be an audit seq"},
		{"bad limit", "/api/audit?limit=-1", "limit must be"},
		{"misspelt filter", "/api/audit?acton=kill", "unknown query parameter(s) acton"},
		{"a filter twice", "/api/audit?action=run&action=kill", "action is given 2 times"},
		{"target longer than any", "/api/audit?target=" + strings.Repeat("x", 257), "target must be at most 256 bytes"},
		{"actor not UTF-8", "/api/audit?actor=%ff", "actor must be at most 256 bytes of UTF-8"},
	})
	if status, body := r.do("GET", "/api/audit", "", nil); status != 401 {
		t.Fatalf("without a token: %d %v", status, body)
	}
}

func TestTimelinePagesOverHTTP(t *testing.T) {
	r := newProjectedRig(t)
	viewer := r.token(apiauth.RoleViewer)
	// Nine events on two PCs, three per second: pages of two cut through
	// equal times, which a cursor on the time alone would skip or repeat.
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	type ev struct{ pc, rec, kind string }
	var evs []ev
	for i := range 9 {
		e := ev{[]string{"pc-1", "pc-2"}[i%2], fmt.Sprintf("rec-%d", i), []string{"agent_online", "service_stopped", "logon"}[i%3]}
		evs = append(evs, e)
		publishJSON(t, r, wire.SubjectObs(e.pc), wire.ObsEvent{PCID: e.pc, Source: "test", EventRecordID: e.rec, Kind: e.kind, At: at.Add(time.Duration(i/3) * time.Second)})
	}
	waitFor(t, "every event projected", func() bool {
		_, body := r.do("GET", "/api/timeline?limit=1000", viewer, nil)
		list, _ := body["events"].([]any)
		return len(list) == len(evs)
	})
	for _, tc := range []struct {
		name, pc, kind string
		limit          int
	}{
		{"everything in pages of 2", "", "", 2},
		{"one PC in pages of 1", "pc-2", "", 1},
		{"one kind in pages of 2", "", "logon", 2},
		{"PC and kind", "pc-1", "agent_online", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			params := url.Values{"limit": {fmt.Sprint(tc.limit)}}
			if tc.pc != "" {
				params.Set("pc", tc.pc)
			}
			if tc.kind != "" {
				params.Set("kind", tc.kind)
			}
			var got []string
			for pages := 0; ; pages++ {
				if pages > len(evs) {
					t.Fatal("next does not advance")
				}
				status, body := r.do("GET", "/api/timeline?"+params.Encode(), viewer, nil)
				if status != 200 {
					t.Fatalf("%d %v", status, body)
				}
				list := body["events"].([]any)
				if len(list) > tc.limit {
					t.Fatalf("%d events with limit %d", len(list), tc.limit)
				}
				for _, e := range list {
					got = append(got, e.(map[string]any)["event_record_id"].(string))
				}
				next := body["next"].(string)
				if next == "" {
					break
				}
				params.Set("before", next)
			}
			// Times grow with the publish order: newest first is the
			// reverse order.
			var want []string
			for i := len(evs) - 1; i >= 0; i-- {
				if (tc.pc == "" || evs[i].pc == tc.pc) && (tc.kind == "" || evs[i].kind == tc.kind) {
					want = append(want, evs[i].rec)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("paged %v, want %v", got, want)
			}
		})
	}
	checkBadRequests(t, r, viewer, []badRequest{
		{"cursor not ours", "/api/timeline?before=2026-03-01T09:00:00Z", "malformed timeline cursor"},
		{"bad pc", "/api/timeline?pc=a.b", `pc "a.b"`},
		{"kind longer than any", "/api/timeline?kind=" + strings.Repeat("k", 300), "kind must be at most 256 bytes"},
		{"misspelt parameter", "/api/timeline?knd=logon", "unknown query parameter(s) knd"},
		{"pc twice", "/api/timeline?pc=pc-1&pc=pc-2", "pc is given 2 times"},
	})
}

func TestResultsTimedOutOverHTTP(t *testing.T) {
	r := newProjectedRig(t)
	viewer := r.token(apiauth.RoleViewer)
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for _, res := range []wire.ExecResult{
		{PCID: "pc-timeout", ExitCode: wire.ExitKilled, TimedOut: true},
		{PCID: "pc-killed", ExitCode: wire.ExitKilled},
		{PCID: "pc-ok", ExitCode: 0},
		// An agent's flag on a run that was not killed is not a timeout.
		{PCID: "pc-flag", ExitCode: 3, TimedOut: true},
	} {
		res.ResultID, res.RequestID, res.ExecID, res.StartedAt, res.FinishedAt = "e1-"+res.PCID, "req-e1", "e1", at, at.Add(time.Minute)
		publishJSON(t, r, wire.SubjectResults(res.RequestID, res.PCID), res)
	}
	waitFor(t, "every result projected", func() bool {
		_, body := r.do("GET", "/api/results?exec_id=e1", viewer, nil)
		list, _ := body["results"].([]any)
		return len(list) == 4
	})
	byPC := func(path, list string) map[string]map[string]any {
		status, body := r.do("GET", path, viewer, nil)
		if status != 200 {
			t.Fatalf("GET %s: %d %v", path, status, body)
		}
		out := map[string]map[string]any{}
		for _, e := range body[list].([]any) {
			m := e.(map[string]any)
			out[m["pc_id"].(string)] = m
		}
		return out
	}
	results := byPC("/api/results?exec_id=e1", "results")
	pcs := byPC("/api/executions/e1", "pcs")
	for _, tc := range []struct {
		pc       string
		timedOut bool
		outcome  string
	}{
		{"pc-timeout", true, "killed"},
		{"pc-killed", false, "killed"},
		{"pc-ok", false, "succeeded"},
		{"pc-flag", false, "failed"},
	} {
		t.Run(tc.pc, func(t *testing.T) {
			if res := results[tc.pc]; res["timed_out"] != tc.timedOut || res["outcome"] != tc.outcome {
				t.Errorf("GET /api/results: %v, want timed_out %v outcome %s", res, tc.timedOut, tc.outcome)
			}
			if p := pcs[tc.pc]; p["timed_out"] != tc.timedOut || p["state"] != tc.outcome {
				t.Errorf("GET /api/executions/e1: %v, want timed_out %v state %s", p, tc.timedOut, tc.outcome)
			}
		})
	}
}

// TestARealTimeoutIsReportedAsTimedOut runs a script past its timeout on a
// real agent: the agent's flag reaches the API through RESULTS and the
// projection.
func TestARealTimeoutIsReportedAsTimedOut(t *testing.T) {
	r := newProjectedRig(t)
	a, err := agent.New(agent.Config{ID: "slow-pc", NATSURLs: []string{r.srv.URL()}, DataDir: t.TempDir(), Version: "test", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "agent answers ping", func() bool {
		status, _ := r.do("POST", "/api/agents/slow-pc/ping", adminToken, nil)
		return status == 200
	})
	status, body := r.do("POST", "/api/run", adminToken, map[string]any{"target": map[string]any{"pc": "slow-pc"}, "shell": "sh", "script": "sleep 60", "timeout": "1s"})
	if status != 202 {
		t.Fatalf("run: %d %v", status, body)
	}
	execID := body["exec_id"].(string)
	var res map[string]any
	waitFor(t, "the result", func() bool {
		_, body := r.do("GET", "/api/results?exec_id="+url.QueryEscape(execID), adminToken, nil)
		list, _ := body["results"].([]any)
		if len(list) == 1 {
			res = list[0].(map[string]any)
		}
		return res != nil
	})
	if res["timed_out"] != true || res["outcome"] != "killed" || res["exit_code"] != float64(wire.ExitKilled) {
		t.Fatalf("result of a run past its timeout: %v", res)
	}
}

// TestAgentsCommandSigningOverHTTP: the agents list and an agent's detail
// carry command_signing and command_key_fingerprints (an array, also when
// empty or never reported), and the list filters by signing state.
func TestAgentsCommandSigningOverHTTP(t *testing.T) {
	r := newProjectedRig(t)
	viewer := r.token(apiauth.RoleViewer)
	now := time.Now().UTC()
	hb := func(pc, state string, keys wire.KeyIDs) store.Heartbeat {
		return store.Heartbeat{Heartbeat: wire.Heartbeat{PCID: pc, At: now, AgentVersion: "1.0.0", CommandSigning: state, CommandKeyFingerprints: keys}, SeenAt: now}
	}
	if err := r.st.Tx(context.Background(), func(tx *store.Tx) error {
		return tx.UpsertHeartbeats([]store.Heartbeat{
			hb("pc-enforced", wire.CommandSigningEnforced, wire.KeyIDs{"34750f98bd59fcfc", "9f86d081884c7d65"}),
			hb("pc-enforced-2", wire.CommandSigningEnforced, wire.KeyIDs{"9f86d081884c7d65"}),
			hb("pc-off", wire.CommandSigningOff, nil),
			hb("pc-nokeys", wire.CommandSigningNoKeys, wire.KeyIDs{}),
			hb("pc-failclosed", wire.CommandSigningFailClosed, nil),
			hb("pc-old", "", nil), // an agent too old to report it
		})
	}); err != nil {
		t.Fatal(err)
	}
	// signing is pc_id -> "state keys" as the API answers them; an
	// absent or null field is reported as such.
	signing := func(agent map[string]any) string {
		state, ok := agent["command_signing"].(string)
		if !ok {
			return fmt.Sprintf("command_signing %v", agent["command_signing"])
		}
		keys, ok := agent["command_key_fingerprints"].([]any)
		if !ok {
			return fmt.Sprintf("command_key_fingerprints %v", agent["command_key_fingerprints"])
		}
		return fmt.Sprint(state, " ", keys)
	}
	want := map[string]string{
		"pc-enforced":   "enforced [34750f98bd59fcfc 9f86d081884c7d65]",
		"pc-enforced-2": "enforced [9f86d081884c7d65]",
		"pc-off":        "off []",
		"pc-nokeys":     "no_keys []",
		"pc-failclosed": "fail_closed []",
		"pc-old":        " []",
	}
	list := func(t *testing.T, params string) map[string]string {
		t.Helper()
		status, body := r.do("GET", "/api/agents?"+params, viewer, nil)
		if status != 200 {
			t.Fatalf("GET /api/agents?%s: %d %v", params, status, body)
		}
		got := map[string]string{}
		agents, _ := body["agents"].([]any)
		for _, a := range agents {
			m := a.(map[string]any)
			got[m["pc_id"].(string)] = signing(m)
		}
		if total, _ := body["total"].(float64); int(total) != len(got) {
			t.Errorf("GET /api/agents?%s: total %v for %d agents", params, body["total"], len(got))
		}
		return got
	}
	if got := list(t, ""); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("GET /api/agents:\n got %v\nwant %v", got, want)
	}
	for pc, w := range want {
		status, body := r.do("GET", "/api/agents/"+pc, viewer, nil)
		if status != 200 || signing(body) != w {
			t.Errorf("GET /api/agents/%s: %d %q, want %q", pc, status, signing(body), w)
		}
	}
	for _, tc := range []struct {
		filter string
		pcs    []string
	}{
		{"enforced", []string{"pc-enforced", "pc-enforced-2"}},
		{"off", []string{"pc-off"}},
		{"no_keys", []string{"pc-nokeys"}},
		{"fail_closed", []string{"pc-failclosed"}},
		{"unknown", []string{"pc-old"}},
	} {
		t.Run("command_signing="+tc.filter, func(t *testing.T) {
			got := list(t, "command_signing="+tc.filter)
			var pcs []string
			for pc := range got {
				pcs = append(pcs, pc)
			}
			slices.Sort(pcs)
			if !slices.Equal(pcs, tc.pcs) {
				t.Fatalf("agents %v, want %v", pcs, tc.pcs)
			}
		})
	}
	// With another filter, and an empty value is no filter.
	if got := list(t, "command_signing=enforced&q=-2"); len(got) != 1 || got["pc-enforced-2"] == "" {
		t.Errorf("command_signing=enforced&q=-2: %v", got)
	}
	if got := list(t, "command_signing="); len(got) != len(want) {
		t.Errorf("command_signing= (empty): %d agents, want all %d", len(got), len(want))
	}
	checkBadRequests(t, r, viewer, []badRequest{
		{"unknown command_signing", "/api/agents?command_signing=on", "off, enforced, no_keys, fail_closed, unknown"},
		{"command_signing is exact", "/api/agents?command_signing=Enforced", `unknown command_signing "Enforced"`},
	})
}
