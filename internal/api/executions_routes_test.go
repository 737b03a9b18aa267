package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/apiauth"
	"github.com/kanade-project/kanade/internal/wire"
)

// publishJSON publishes v to a stream subject and waits for the PubAck.
func publishJSON(t *testing.T, r *rig, subject string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.srv.JetStream(t).Publish(context.Background(), subject, b); err != nil {
		t.Fatal(err)
	}
}

// executionsByID lists every execution in one page and indexes it.
func executionsByID(t *testing.T, r *rig, token string) (map[string]map[string]any, []string) {
	t.Helper()
	status, body := r.do("GET", "/api/executions?limit=500", token, nil)
	if status != 200 {
		t.Fatalf("GET /api/executions: %d %v", status, body)
	}
	byID := map[string]map[string]any{}
	var order []string
	list, _ := body["executions"].([]any)
	for _, e := range list {
		m := e.(map[string]any)
		byID[m["exec_id"].(string)] = m
		order = append(order, m["exec_id"].(string))
	}
	return byID, order
}

// waitFor polls fn until it holds or the deadline passes: the projector is
// asynchronous.
func waitFor(t *testing.T, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestExecutionsListOverHTTP(t *testing.T) {
	r := newProjectedRig(t)
	viewer := r.token(apiauth.RoleViewer)
	base := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	result := func(exec, job, pc string, code int, at time.Time, mod func(*wire.ExecResult)) {
		res := wire.ExecResult{ResultID: exec + "-" + pc, RequestID: "req-" + exec, ExecID: exec, JobID: job, PCID: pc,
			ExitCode: code, StartedAt: at, FinishedAt: at.Add(time.Minute)}
		if mod != nil {
			mod(&res)
		}
		publishJSON(t, r, wire.SubjectResults(res.RequestID, res.PCID), res)
	}
	started := func(exec, job, pc string, at time.Time) {
		publishJSON(t, r, wire.SubjectEventsStarted(exec, pc), wire.EventStarted{ResultID: exec + "-" + pc,
			RequestID: "req-" + exec, ExecID: exec, JobID: job, PCID: pc, StartedAt: at})
	}
	// Twelve older single-PC executions, one a minute.
	var bulk []string
	for i := range 12 {
		id := fmt.Sprintf("bulk-%02d", i)
		bulk = append(bulk, id)
		result(id, wire.AdhocJobID, "pc-1", 0, base.Add(time.Duration(i)*time.Minute), nil)
	}
	// A patch on four PCs: two succeeded, one failed, one still running.
	at := base.Add(time.Hour)
	for i, pc := range []string{"pc-1", "pc-2", "pc-3", "pc-4"} {
		started("patch-1", "patch", pc, at.Add(time.Duration(i)*time.Second))
	}
	result("patch-1", "patch", "pc-1", 0, at, nil)
	result("patch-1", "patch", "pc-2", 0, at.Add(time.Second), nil)
	result("patch-1", "patch", "pc-3", 2, at.Add(2*time.Second), nil)
	// A job that timed out on one PC and was skipped (revoked) on another.
	result("inv-1", "inventory", "pc-1", wire.ExitKilled, at.Add(-time.Minute), func(r *wire.ExecResult) { r.TimedOut = true })
	result("inv-1", "inventory", "pc-2", wire.ExitRevoked, at.Add(-time.Minute), func(r *wire.ExecResult) { r.Skipped, r.StartedAt = true, time.Time{} })
	// A long job no PC has finished yet.
	started("long-1", "reindex", "pc-9", at.Add(time.Hour))

	waitFor(t, "every execution listed", func() bool {
		byID, _ := executionsByID(t, r, viewer)
		p := byID["patch-1"]
		return len(byID) == 15 && p != nil && p["results"] == 3.0 && p["running"] == 1.0 && byID["inv-1"]["results"] == 2.0
	})
	byID, order := executionsByID(t, r, viewer)
	wantOrder := []string{"long-1", "patch-1", "inv-1"}
	for i := len(bulk) - 1; i >= 0; i-- {
		wantOrder = append(wantOrder, bulk[i])
	}
	if !slices.Equal(order, wantOrder) {
		t.Fatalf("order = %v, want %v", order, wantOrder)
	}

	t.Run("fields", func(t *testing.T) {
		for _, tc := range []struct {
			exec                                                 string
			job                                                  string
			results, succeeded, failed, skipped, killed, running float64
			first, last                                          string
		}{
			{"patch-1", "patch", 3, 2, 1, 0, 0, 1, "2026-03-01T10:00:00Z", "2026-03-01T10:01:02Z"},
			{"inv-1", "inventory", 2, 0, 0, 1, 1, 0, "2026-03-01T09:59:00Z", "2026-03-01T10:00:00Z"},
			{"long-1", "reindex", 0, 0, 0, 0, 0, 1, "2026-03-01T11:00:00Z", ""},
			{"bulk-03", wire.AdhocJobID, 1, 1, 0, 0, 0, 0, "2026-03-01T09:03:00Z", "2026-03-01T09:04:00Z"},
		} {
			t.Run(tc.exec, func(t *testing.T) {
				e := byID[tc.exec]
				last, _ := e["last_result_at"].(string)
				if e["job_id"] != tc.job || e["results"] != tc.results || e["succeeded"] != tc.succeeded || e["failed"] != tc.failed ||
					e["skipped"] != tc.skipped || e["killed"] != tc.killed || e["running"] != tc.running ||
					e["first_seen_at"] != tc.first || last != tc.last {
					t.Fatalf("listed %v", e)
				}
				// The same counters as the execution's own endpoint.
				status, one := r.do("GET", "/api/executions/"+tc.exec, viewer, nil)
				if status != 200 {
					t.Fatalf("GET /api/executions/%s: %d %v", tc.exec, status, one)
				}
				for k, v := range one["counters"].(map[string]any) {
					if e[k] != v {
						t.Errorf("%s: listed %v, GET /api/executions/%s says %v", k, e[k], tc.exec, v)
					}
				}
			})
		}
	})

	t.Run("pages", func(t *testing.T) {
		var got []string
		before := ""
		for pages := 0; pages < 10; pages++ {
			status, body := r.do("GET", "/api/executions?limit=4&before="+url.QueryEscape(before), viewer, nil)
			if status != 200 {
				t.Fatalf("page %d: %d %v", pages, status, body)
			}
			list := body["executions"].([]any)
			if len(list) > 4 {
				t.Fatalf("page of %d with limit 4", len(list))
			}
			for _, e := range list {
				got = append(got, e.(map[string]any)["exec_id"].(string))
			}
			before = body["next"].(string)
			if before == "" {
				break
			}
		}
		if !slices.Equal(got, wantOrder) {
			t.Fatalf("paged = %v, want %v", got, wantOrder)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			name, path, token string
			status            int
			code              string
		}{
			{"bad cursor", "/api/executions?before=%21%21", viewer, 400, "bad_request"},
			{"bad limit", "/api/executions?limit=-1", viewer, 400, "bad_request"},
			{"no token", "/api/executions", "", 401, "unauthorized"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if status, body := r.do("GET", tc.path, tc.token, nil); status != tc.status || errCode(body) != tc.code {
					t.Fatalf("%d %v, want %d %q", status, body, tc.status, tc.code)
				}
			})
		}
	})
}

// TestExecutionsListShowsARealRun runs a script on a real agent through
// the API and finds it in the list.
func TestExecutionsListShowsARealRun(t *testing.T) {
	r := newProjectedRig(t)
	a, err := agent.New(agent.Config{ID: "list-pc", NATSURLs: []string{r.srv.URL()}, DataDir: t.TempDir(), Version: "test", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "agent answers ping", func() bool {
		status, _ := r.do("POST", "/api/agents/list-pc/ping", adminToken, nil)
		return status == 200
	})
	status, body := r.do("POST", "/api/run", adminToken, map[string]any{"target": map[string]any{"pc": "list-pc"}, "script": "echo hi"})
	if status != 202 {
		t.Fatalf("run: %d %v", status, body)
	}
	execID := body["exec_id"].(string)
	viewer := r.token(apiauth.RoleViewer)
	waitFor(t, "the run listed with its result", func() bool {
		byID, _ := executionsByID(t, r, viewer)
		e := byID[execID]
		return e != nil && e["results"] == 1.0
	})
	byID, order := executionsByID(t, r, viewer)
	e := byID[execID]
	if order[0] != execID || e["job_id"] != wire.AdhocJobID || e["succeeded"] != 1.0 || e["running"] != 0.0 ||
		e["first_seen_at"] == nil || e["last_result_at"] == nil {
		t.Fatalf("listed %v (order %v)", e, order)
	}
}
