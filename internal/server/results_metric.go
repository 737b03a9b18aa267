package server

import (
	"github.com/kanade-project/kanade/internal/api"
	"github.com/kanade-project/kanade/internal/store"
)

// writeResultsMetric adds kanade_results_total: results committed to the
// projection, by class (store.Classify), every class from the start.
// rate(kanade_results_total[1m]) is results per second.
func writeResultsMetric(m *api.MetricsWriter, byClass map[string]uint64) {
	for _, class := range store.Classes() {
		m.Counter("kanade_results_total", "Results projected into SQLite, each result_id once, by outcome (succeeded, failed, timed_out, killed, skipped, invalid, spawn_failed, outcome_unknown).", float64(byClass[class]), "outcome", class)
	}
}
