package projector_test

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"testing"

	"github.com/kanade-project/kanade/internal/store"
	"github.com/kanade-project/kanade/internal/wire"
)

// TestResultsCountedOncePerResultByClass: Stats.Results counts what the
// RESULTS projector committed, by store.Classify, each result_id once —
// whether the agent published it twice or the consumer redelivered the
// whole stream to the same running projector.
func TestResultsCountedOncePerResultByClass(t *testing.T) {
	e := newEnv(t)
	st := openStore(t, filepath.Join(t.TempDir(), "k.db"))
	timedOut := result("r3", "e1", "pc3", wire.ExitKilled)
	timedOut.TimedOut = true
	unknown := result("r5", "e1", "pc5", wire.ExitOutcomeUnknown)
	unknown.Skipped = true
	for _, r := range []wire.ExecResult{
		result("r1", "e1", "pc1", 0),
		result("r1", "e1", "pc1", 0), // published twice by the agent
		result("r2", "e1", "pc2", 2),
		timedOut,
		result("r4", "e1", "pc4", wire.ExitKilled),
		unknown,
	} {
		e.publish(wire.SubjectResultsLegacy(r.RequestID), r)
	}
	want := map[string]uint64{store.OutcomeSucceeded: 1, store.OutcomeFailed: 1, store.ClassTimedOut: 1,
		store.OutcomeKilled: 1, store.ClassOutcomeUnknown: 1}

	r := start(t, testOptions(e.js, st))
	caughtUp(t, r)
	if got := r.Stats().Results; !maps.Equal(got, want) {
		t.Fatalf("results = %v, want %v", got, want)
	}

	// Deleting the durable consumer makes the running projector recreate
	// it, and the new consumer delivers the stream from its start again.
	if err := e.js.DeleteConsumer(context.Background(), wire.StreamResults, "kanade_proj_results"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the stream delivered a second time", func() (bool, string) {
		rs, _ := r.Stats().Stream(wire.StreamResults)
		return rs.Applied >= 12, fmt.Sprintf("applied %d", rs.Applied)
	})
	caughtUp(t, r)
	if got := r.Stats().Results; !maps.Equal(got, want) {
		t.Fatalf("after the redelivery results = %v, want still %v", got, want)
	}
}
