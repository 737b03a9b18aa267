package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/server"
	"github.com/kanade-project/kanade/internal/serverconfig"
	"github.com/kanade-project/kanade/internal/wire"
)

// scrape reads /metrics and returns every sample by its series
// (name{labels}).
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestServerTrimsHistoryAndCountsResults runs the whole server with a
// retention pass every 50 ms and the default ages, publishes old and fresh
// rows of every trimmable kind to the streams as agents and the API would,
// and reads the outcome over HTTP: the old rows are deleted and counted on
// /metrics, the fresh ones stay, and kanade_results_total counts each
// result once by outcome.
func TestServerTrimsHistoryAndCountsResults(t *testing.T) {
	t.Setenv(serverconfig.EnvAPIToken, token)
	s := startServerWith(t, server.Options{DataDir: t.TempDir(), NATSListen: freeAddr(t), RetentionInterval: 50 * time.Millisecond})
	nc, err := nats.Connect(s.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	pub := func(subject string, v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if _, err := js.Publish(context.Background(), subject, b); err != nil {
			t.Fatalf("publish %s: %v", subject, err)
		}
	}
	now := time.Now().UTC()
	ago := func(days int) time.Time { return now.Add(-time.Duration(days) * 24 * time.Hour) }

	// Default ages: results 90d, started 7d, timeline 30d,
	// inventory_history 180d, audit 365d.
	for i := range 3 {
		pub(wire.SubjectResultsLegacy("req-old"), wire.ExecResult{ResultID: fmt.Sprint("old-", i), RequestID: "req-old", ExecID: "exec-old", PCID: "pc-1", ExitCode: 1, FinishedAt: ago(100)})
	}
	ok := wire.ExecResult{ResultID: "new-ok", RequestID: "req-new", ExecID: "exec-new", PCID: "pc-1", FinishedAt: now}
	pub(wire.SubjectResultsLegacy("req-new"), ok)
	pub(wire.SubjectResultsLegacy("req-new"), ok) // an agent's retry after a lost PubAck
	pub(wire.SubjectResultsLegacy("req-new"), wire.ExecResult{ResultID: "new-timeout", RequestID: "req-new", ExecID: "exec-new", PCID: "pc-2", ExitCode: wire.ExitKilled, TimedOut: true, FinishedAt: now})
	pub(wire.SubjectResultsLegacy("req-new"), wire.ExecResult{ResultID: "new-unknown", RequestID: "req-new", ExecID: "exec-new", PCID: "pc-3", ExitCode: wire.ExitOutcomeUnknown, Skipped: true, FinishedAt: now})
	for i, at := range []time.Time{ago(10), ago(8), now} {
		pub(wire.SubjectEventsStarted("exec-s", "pc-1"), wire.EventStarted{ResultID: fmt.Sprint("s-", i), ExecID: "exec-s", PCID: "pc-1", StartedAt: at})
	}
	for i, at := range []time.Time{ago(40), ago(31), now} {
		pub(wire.SubjectObs("pc-1"), wire.ObsEvent{PCID: "pc-1", Kind: "agent_online", Source: "agent", EventRecordID: fmt.Sprint("o-", i), At: at})
	}
	for i, at := range []time.Time{ago(200), now} {
		data, _ := json.Marshal(wire.OSInfo{Name: fmt.Sprint("os ", i)})
		pub(wire.SubjectInventory("pc-1", wire.SectionOS), wire.InventoryMessage{PCID: "pc-1", Section: wire.SectionOS, CollectedAt: at, Hash: fmt.Sprint("h", i), Data: data})
	}
	pub(wire.SubjectAudit("tester", "run", "old"), wire.AuditEvent{At: ago(400), Actor: "tester", Action: "run", Target: "old"})
	pub(wire.SubjectAudit("tester", "run", "new"), wire.AuditEvent{At: now, Actor: "tester", Action: "run", Target: "new"})

	want := map[string]float64{
		`kanade_retention_deleted_rows_total{table="results"}`:           3,
		`kanade_retention_deleted_rows_total{table="started"}`:           2,
		`kanade_retention_deleted_rows_total{table="timeline"}`:          2,
		`kanade_retention_deleted_rows_total{table="inventory_history"}`: 1,
		`kanade_retention_deleted_rows_total{table="audit"}`:             1,
		`kanade_retention_errors_total{table="results"}`:                 0,
		`kanade_results_total{outcome="failed"}`:                         3,
		`kanade_results_total{outcome="succeeded"}`:                      1,
		`kanade_results_total{outcome="timed_out"}`:                      1,
		`kanade_results_total{outcome="outcome_unknown"}`:                1,
		`kanade_results_total{outcome="killed"}`:                         0,
		`kanade_results_total{outcome="skipped"}`:                        0,
	}
	var got map[string]float64
	poll(t, "retention and result counts on /metrics", func() bool {
		got = scrape(t, s.httpURL)
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				return false
			}
		}
		return true
	})
	// The duplicate of new-ok precedes new-timeout and new-unknown in the
	// stream, and counts follow commits in stream order: with those two
	// counted, a double count of new-ok would already show.

	// The fresh rows are all still there.
	var res struct {
		Results []struct {
			ResultID string `json:"result_id"`
			Outcome  string `json:"outcome"`
		} `json:"results"`
	}
	api(t, "GET", s.httpURL+"/api/results?limit=1000", nil, &res)
	var ids []string
	for _, r := range res.Results {
		ids = append(ids, r.ResultID+":"+r.Outcome)
	}
	if strings.Join(ids, ",") != "new-unknown:skipped,new-timeout:killed,new-ok:succeeded" {
		t.Errorf("results left = %v", ids)
	}
	var tl struct {
		Events []struct {
			EventRecordID string `json:"event_record_id"`
		}
	}
	api(t, "GET", s.httpURL+"/api/timeline?limit=1000", nil, &tl)
	if len(tl.Events) != 1 || tl.Events[0].EventRecordID != "o-2" {
		t.Errorf("timeline left = %+v", tl.Events)
	}
	var au struct{ Audit []struct{ Target string } }
	api(t, "GET", s.httpURL+"/api/audit?limit=1000", nil, &au)
	if len(au.Audit) != 1 || au.Audit[0].Target != "new" {
		t.Errorf("audit left = %+v", au.Audit)
	}
	var inv struct{ Sections []struct{ Hash string } }
	if code := api(t, "GET", s.httpURL+"/api/inventory/pc-1", nil, &inv); code != 200 || len(inv.Sections) != 1 || inv.Sections[0].Hash != "h1" {
		t.Errorf("latest inventory = %d %+v; the latest section is never trimmed", code, inv.Sections)
	}
}
