package projector

import "sync"

// resultCounts counts results by class (store.Classify) as the RESULTS
// projector commits them, for kanade_results_total. Only results that a
// commit stored for the first time are added (store.Tx.AddedResults), so a
// redelivery — after a failed ack, or a restart of the consumer — never
// counts twice: the count follows the database, not the deliveries. A new
// process starts from zero, as Prometheus counters do; a database rebuilt
// by replay counts the replayed results once more in that process.
type resultCounts struct {
	mu sync.Mutex
	n  map[string]uint64
}

func (c *resultCounts) add(added map[string]uint64) {
	if len(added) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = make(map[string]uint64, len(added))
	}
	for class, n := range added {
		c.n[class] += n
	}
}

func (c *resultCounts) snapshot() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]uint64, len(c.n))
	for class, n := range c.n {
		out[class] = n
	}
	return out
}
