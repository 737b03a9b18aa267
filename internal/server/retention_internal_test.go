package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/api"
	"github.com/kanade-project/kanade/internal/serverconfig"
	"github.com/kanade-project/kanade/internal/store"
	"github.com/kanade-project/kanade/internal/wire"
)

// fillHistory writes, into every trimmable table, old rows before
// now-maxAge-1h and then fresh rows at now-1h, oldest first (an inventory
// collection older than the stored one is ignored).
func fillHistory(t *testing.T, st *store.Store, now time.Time, maxAge time.Duration, old, fresh int) {
	t.Helper()
	err := st.Tx(context.Background(), func(tx *store.Tx) error {
		seq := uint64(0)
		for i := range old + fresh {
			at := now.Add(-time.Hour)
			if i < old {
				at = now.Add(-maxAge - time.Hour - time.Duration(old-i)*time.Minute)
			}
			seq++
			id := fmt.Sprintf("r%03d", i)
			if err := tx.UpsertResult(wire.ExecResult{ResultID: id, ExecID: "e1", PCID: "pc", FinishedAt: at}, seq); err != nil {
				return err
			}
			if err := tx.AddStarted(wire.EventStarted{ResultID: id, ExecID: "e1", PCID: "pc", StartedAt: at}); err != nil {
				return err
			}
			if err := tx.AddTimeline(wire.ObsEvent{PCID: "pc", Kind: "k", Source: "agent", EventRecordID: id, At: at}, seq); err != nil {
				return err
			}
			// Each collection with a new hash is one history row;
			// the last one stays the latest section.
			data, _ := json.Marshal(wire.OSInfo{Name: id})
			if err := tx.ApplyInventory(wire.InventoryMessage{PCID: "pc", Section: wire.SectionOS, CollectedAt: at, Hash: id, Data: data}); err != nil {
				return err
			}
			if err := tx.AddAudit(wire.AuditEvent{At: at, Actor: "tester", Action: "run", Target: id}, seq); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRetentionDeletesOldRowsInBatchesAndKeepsNewOnes(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "kanade.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	const maxAge, old, fresh = 30 * 24 * time.Hour, 95, 5
	fillHistory(t, st, now, maxAge, old, fresh)

	policy := serverconfig.RetentionPolicy{Interval: time.Hour, BatchSize: 10}
	for _, table := range store.TrimmableTables() {
		policy.Tables = append(policy.Tables, serverconfig.TableRetention{Table: table, MaxAge: maxAge})
	}
	// audit is kept forever here: a disabled table is not touched.
	policy.Tables[slices.IndexFunc(policy.Tables, func(t serverconfig.TableRetention) bool { return t.Table == "audit" })].MaxAge = 0
	r := newRetainer(st, policy, slog.New(slog.DiscardHandler), 0)
	r.now = func() time.Time { return now }

	reports := r.trimAll(ctx)
	var trimmed []string
	for _, rep := range reports {
		trimmed = append(trimmed, rep.Table)
		// 95 rows in batches of 10: nine full batches and one of five.
		if rep.Err != nil || rep.Deleted != old || rep.Batches != 10 || !rep.Cutoff.Equal(now.Add(-maxAge)) {
			t.Errorf("%s: %+v, want %d rows deleted in 10 batches", rep.Table, rep, old)
		}
	}
	if want := []string{"results", "started", "timeline", "inventory_history"}; !slices.Equal(trimmed, want) {
		t.Fatalf("trimmed %v, want %v", trimmed, want)
	}
	for table, want := range map[string]int64{"results": fresh, "started": fresh, "timeline": fresh, "inventory_history": fresh, "audit": old + fresh, "inventory_latest": 1} {
		if n, err := st.Count(ctx, table); err != nil || n != want {
			t.Errorf("%s: %d rows left (%v), want %d", table, n, err, want)
		}
	}
	// What is left is the fresh rows.
	rs, err := st.ListResults(ctx, store.ResultFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range rs {
		if res.FinishedAt.Before(now.Add(-maxAge)) {
			t.Errorf("result %s of %v survived", res.ResultID, res.FinishedAt)
		}
	}
	// Counters of executions are totals, not history: they stay.
	if c, _ := st.ExecutionCounters(ctx, "e1"); c.Results != old+fresh {
		t.Errorf("exec counters = %+v, want %d results", c, old+fresh)
	}

	var b strings.Builder
	r.writeMetrics(api.NewMetricsWriter(&b))
	for _, want := range []string{
		`kanade_retention_deleted_rows_total{table="results"} 95`,
		`kanade_retention_deleted_rows_total{table="inventory_history"} 95`,
		`kanade_retention_deleted_rows_total{table="audit"} 0`,
		`kanade_retention_errors_total{table="results"} 0`,
	} {
		if !strings.Contains(b.String(), want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, b.String())
		}
	}

	// A second pass finds nothing more.
	for _, rep := range r.trimAll(ctx) {
		if rep.Deleted != 0 || rep.Batches != 0 || rep.Err != nil {
			t.Errorf("second pass: %+v", rep)
		}
	}
}

// TestRetentionPolicyCoversEveryTrimmableTable: serverconfig lists the
// tables by name; the store is what trims them. They must agree.
func TestRetentionPolicyCoversEveryTrimmableTable(t *testing.T) {
	p, err := serverconfig.Default().Retention.Policy()
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for _, tr := range p.Tables {
		tables = append(tables, tr.Table)
	}
	if !slices.Equal(tables, store.TrimmableTables()) {
		t.Fatalf("policy tables %v, store trims %v", tables, store.TrimmableTables())
	}
}
