package store

import (
	"maps"
	"slices"
	"testing"

	"github.com/kanade-project/kanade/internal/wire"
)

func TestClassifyAndOutcome(t *testing.T) {
	for _, tc := range []struct {
		name           string
		code           int
		skipped, timed bool
		class, outcome string
	}{
		{"success", 0, false, false, OutcomeSucceeded, OutcomeSucceeded},
		{"script failure", 3, false, false, OutcomeFailed, OutcomeFailed},
		{"refused signature (never skipped) is a failure", wire.ExitRefusedSignature, false, false, OutcomeFailed, OutcomeFailed},
		{"a script exiting 128 is a failure", wire.ExitSpawnFailed, false, false, OutcomeFailed, OutcomeFailed},
		{"killed", wire.ExitKilled, false, false, OutcomeKilled, OutcomeKilled},
		{"timed out", wire.ExitKilled, false, true, ClassTimedOut, OutcomeKilled},
		{"version pin", wire.ExitVersionPin, true, false, OutcomeSkipped, OutcomeSkipped},
		{"deadline", wire.ExitDeadlinePassed, true, false, OutcomeSkipped, OutcomeSkipped},
		{"revoked", wire.ExitRevoked, true, false, OutcomeSkipped, OutcomeSkipped},
		{"stale", wire.ExitStale, true, false, OutcomeSkipped, OutcomeSkipped},
		{"invalid command", wire.ExitInvalidCommand, true, false, ClassInvalid, OutcomeSkipped},
		{"spawn failed", wire.ExitSpawnFailed, true, false, ClassSpawnFailed, OutcomeSkipped},
		{"outcome unknown", wire.ExitOutcomeUnknown, true, false, ClassOutcomeUnknown, OutcomeSkipped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := wire.ExecResult{ExitCode: tc.code, Skipped: tc.skipped, TimedOut: tc.timed}
			if got := Classify(r); got != tc.class {
				t.Errorf("Classify = %s, want %s", got, tc.class)
			}
			if got := Outcome(r); got != tc.outcome {
				t.Errorf("Outcome = %s, want %s", got, tc.outcome)
			}
			if !slices.Contains(Classes(), tc.class) {
				t.Errorf("Classes() lacks %s", tc.class)
			}
		})
	}
}

func TestAddedResultsCountsEachResultOnce(t *testing.T) {
	s := openTemp(t)
	timedOut := result("r2", "e1", "pcB", wire.ExitKilled)
	timedOut.TimedOut = true
	var added map[string]uint64
	mustTx(t, s, func(tx *Tx) error {
		for i, r := range []wire.ExecResult{result("r1", "e1", "pcA", 0), timedOut, result("r1", "e1", "pcA", 0)} {
			if err := tx.UpsertResult(r, uint64(i+1)); err != nil {
				return err
			}
		}
		added = tx.AddedResults()
		return nil
	})
	if want := map[string]uint64{OutcomeSucceeded: 1, ClassTimedOut: 1}; !maps.Equal(added, want) {
		t.Fatalf("first batch added %v, want %v", added, want)
	}
	// Redelivered, and a newer copy with another outcome: stored, but
	// not new results.
	mustTx(t, s, func(tx *Tx) error {
		if err := tx.UpsertResult(result("r1", "e1", "pcA", 0), 1); err != nil {
			return err
		}
		if err := tx.UpsertResult(result("r2", "e1", "pcB", 1), 9); err != nil {
			return err
		}
		added = tx.AddedResults()
		return nil
	})
	if added != nil {
		t.Fatalf("redelivery added %v, want nothing", added)
	}
	if c, _ := s.ExecutionCounters(t.Context(), "e1"); c.Results != 2 || c.Succeeded != 1 || c.Failed != 1 || c.Killed != 0 {
		t.Fatalf("counters = %+v", c)
	}
}
