package projector_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/kanade-project/kanade/internal/store"
	"github.com/kanade-project/kanade/internal/wire"
)

// TestPayloadNamingAnotherPCIsRefused: where NATS roles are enforced an
// agent may publish only on subjects carrying its own pc, so the subject is
// the sender's identity. A message whose payload names another PC is an
// impersonation attempt: it is acked, counted as forged, and stored under
// neither name; the same message naming the subject's PC (or none) is
// stored.
func TestPayloadNamingAnotherPCIsRefused(t *testing.T) {
	type msg struct {
		subject string
		body    any
	}
	tests := []struct {
		stream string
		forged msg // pc-a publishing in pc-b's name
		honest msg // pc-a publishing as itself
		// stored counts pc-a's and pc-b's rows of the projected table.
		stored func(t *testing.T, st *store.Store) (pcA, pcB int)
	}{
		{
			stream: wire.StreamResults,
			forged: msg{wire.SubjectResults("req-1", "pc-a"), result("r-forged", "e1", "pc-b", 0)},
			honest: msg{wire.SubjectResults("req-1", "pc-a"), result("r-honest", "e1", "pc-a", 0)},
			stored: func(t *testing.T, st *store.Store) (int, int) {
				return len(listResults(t, st, "pc-a")), len(listResults(t, st, "pc-b"))
			},
		},
		{
			stream: wire.StreamEvents,
			forged: msg{wire.SubjectEventsStarted("e1", "pc-a"), wire.EventStarted{ResultID: "r-forged", RequestID: "req-1", ExecID: "e1", PCID: "pc-b", StartedAt: t0}},
			honest: msg{wire.SubjectEventsStarted("e1", "pc-a"), wire.EventStarted{ResultID: "r-honest", RequestID: "req-1", ExecID: "e1", PCID: "pc-a", StartedAt: t0}},
			stored: func(t *testing.T, st *store.Store) (int, int) {
				pcs, err := st.ExecutionPCs(context.Background(), "e1")
				if err != nil {
					t.Fatal(err)
				}
				n := map[string]int{}
				for _, p := range pcs {
					n[p.PCID]++
				}
				return n["pc-a"], n["pc-b"]
			},
		},
		{
			stream: wire.StreamObs,
			forged: msg{wire.SubjectObs("pc-a"), wire.ObsEvent{PCID: "pc-b", At: t0, Kind: wire.ObsAgentOnline, Source: "agent", EventRecordID: "forged"}},
			honest: msg{wire.SubjectObs("pc-a"), wire.ObsEvent{PCID: "pc-a", At: t0, Kind: wire.ObsAgentOnline, Source: "agent", EventRecordID: "honest"}},
			stored: func(t *testing.T, st *store.Store) (int, int) {
				return len(timeline(t, st, "pc-a")), len(timeline(t, st, "pc-b"))
			},
		},
		{
			stream: wire.StreamInventory,
			forged: msg{wire.SubjectInventory("pc-a", wire.SectionOS), wire.InventoryMessage{PCID: "pc-b", Section: wire.SectionOS, CollectedAt: t0, Hash: "h1", Data: json.RawMessage(`{"name":"forged"}`)}},
			honest: msg{wire.SubjectInventory("pc-a", wire.SectionOS), wire.InventoryMessage{PCID: "pc-a", Section: wire.SectionOS, CollectedAt: t0, Hash: "h2", Data: json.RawMessage(`{"name":"honest"}`)}},
			stored: func(t *testing.T, st *store.Store) (int, int) {
				a, err := st.InventoryLatest(context.Background(), "pc-a")
				if err != nil {
					t.Fatal(err)
				}
				b, err := st.InventoryLatest(context.Background(), "pc-b")
				if err != nil {
					t.Fatal(err)
				}
				return len(a), len(b)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.stream, func(t *testing.T) {
			e := newEnv(t)
			st := openStore(t, filepath.Join(t.TempDir(), "k.db"))
			e.publish(tt.forged.subject, tt.forged.body)
			e.publish(tt.honest.subject, tt.honest.body)
			o := testOptions(e.js, st)
			o.Streams = []string{tt.stream}
			r := start(t, o)
			caughtUp(t, r)
			ss, _ := r.Stats().Stream(tt.stream)
			if ss.Forged != 1 || ss.Applied != 1 || ss.DecodeErrors != 0 {
				t.Fatalf("stats = %+v, want 1 forged, 1 applied", ss)
			}
			if a, b := tt.stored(t, st); a != 1 || b != 0 {
				t.Fatalf("rows: pc-a %d, pc-b %d; want 1 and 0 (the forged message stored under neither)", a, b)
			}
		})
	}
}

func listResults(t *testing.T, st *store.Store, pc string) []store.Result {
	t.Helper()
	rs, err := st.ListResults(context.Background(), store.ResultFilter{PCID: pc})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func timeline(t *testing.T, st *store.Store, pc string) []store.TimelineEvent {
	t.Helper()
	evs, err := st.Timeline(context.Background(), store.TimelineFilter{PCID: pc})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}
