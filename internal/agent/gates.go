package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/wire"
)

// gateCache remembers, per job, the last values read from script_current
// (version pin) and script_status (revocation) and when they were read.
// The values are read with direct KV gets right before a launch, so no
// watch consumer is held per agent; when the broker is unreachable the
// cached values stand in, as old as the staleness policy allows.
type gateCache struct {
	mu   sync.Mutex
	kv   map[string]jetstream.KeyValue
	jobs map[string]jobFacts
}

type jobFacts struct {
	pin    string // "" when the job is not pinned
	status string // "" when never set
	at     time.Time
}

func newGateCache() *gateCache {
	return &gateCache{kv: map[string]jetstream.KeyValue{}, jobs: map[string]jobFacts{}}
}

// checkGates applies layer 2 of stop-the-bleed. It fails closed: a gate it
// cannot evaluate stops the command.
func (a *Agent) checkGates(ctx context.Context, c wire.Command) (code int, reason string, ok bool) {
	if c.DeadlineAt != nil && time.Now().After(*c.DeadlineAt) {
		return wire.ExitDeadlinePassed, fmt.Sprintf("start deadline %s passed before the command could start", c.DeadlineAt.UTC().Format(time.RFC3339)), false
	}
	mode := wire.StalenessCached
	var maxAge time.Duration
	if c.Staleness != nil {
		if c.Staleness.Mode != "" {
			mode = c.Staleness.Mode
		}
		maxAge = c.Staleness.MaxCacheAge.D()
	}
	// Ad-hoc runs are not in the catalog: nothing to pin or revoke.
	if mode == wire.StalenessUnchecked || (c.ID == wire.AdhocJobID && c.Version == "") {
		return 0, "", true
	}
	facts, err := a.jobFacts(ctx, c.ID)
	if err != nil {
		return wire.ExitStale, fmt.Sprintf("cannot check job %q against script_current/script_status (%v) and nothing is cached; not running (fail closed)", c.ID, err), false
	}
	if mode == wire.StalenessStrict {
		if age := time.Since(facts.at); age > maxAge {
			return wire.ExitStale, fmt.Sprintf("staleness strict: the cached pin/revocation of job %q is %s old, more than max_cache_age %s", c.ID, age.Round(time.Second), maxAge), false
		}
	}
	if facts.status == wire.ScriptRevoked {
		return wire.ExitRevoked, fmt.Sprintf("job %q is REVOKED in script_status", c.ID), false
	}
	if facts.pin != "" && facts.pin != c.Version {
		return wire.ExitVersionPin, fmt.Sprintf("job %q is pinned to version %q in script_current; this command is version %q", c.ID, facts.pin, c.Version), false
	}
	return 0, "", true
}

// jobFacts reads the job's pin and status fresh when connected, else from
// the cache; an error means neither was possible.
func (a *Agent) jobFacts(ctx context.Context, job string) (jobFacts, error) {
	g := a.gates
	var fetchErr error
	if a.link.Connected() {
		c, cancel := context.WithTimeout(ctx, 3*time.Second)
		f, err := a.fetchFacts(c, job)
		cancel()
		if err == nil {
			g.mu.Lock()
			g.jobs[job] = f
			g.mu.Unlock()
			return f, nil
		}
		fetchErr = err
	} else {
		fetchErr = errors.New("not connected to the broker")
	}
	g.mu.Lock()
	f, ok := g.jobs[job]
	g.mu.Unlock()
	if !ok {
		return jobFacts{}, fetchErr
	}
	return f, nil
}

func (a *Agent) fetchFacts(ctx context.Context, job string) (jobFacts, error) {
	if err := wire.CheckToken("job id", job); err != nil {
		return jobFacts{}, err
	}
	pin, err := a.kvString(ctx, wire.BucketScriptCurrent, job)
	if err != nil {
		return jobFacts{}, err
	}
	status, err := a.kvString(ctx, wire.BucketScriptStatus, job)
	if err != nil {
		return jobFacts{}, err
	}
	return jobFacts{pin: pin, status: status, at: time.Now()}, nil
}

// kvString reads one key; a missing key is "", not an error.
func (a *Agent) kvString(ctx context.Context, bucket, key string) (string, error) {
	g := a.gates
	g.mu.Lock()
	kv, ok := g.kv[bucket]
	g.mu.Unlock()
	if !ok {
		var err error
		kv, err = a.js.KeyValue(ctx, bucket)
		if err != nil {
			return "", fmt.Errorf("bucket %s: %w", bucket, err)
		}
		g.mu.Lock()
		g.kv[bucket] = kv
		g.mu.Unlock()
	}
	e, err := kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("%s/%s: %w", bucket, key, err)
	}
	return string(e.Value()), nil
}
