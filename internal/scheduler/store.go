package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/jobs"
	"github.com/kanade-project/kanade/internal/kvcas"
	"github.com/kanade-project/kanade/internal/wire"
)

// ErrUnknownJob: a schedule names a job that is not in the catalog.
var ErrUnknownJob = errors.New("unknown job")

// Store is the schedules bucket: key = schedule id, value = canonical YAML.
type Store struct {
	kv      jetstream.KeyValue
	state   jetstream.KeyValue // optional: purged on Delete
	catalog *jobs.Catalog
}

// OpenStore opens the schedules and jobs buckets, and schedule_state when
// it exists (see Ensure).
func OpenStore(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	kv, err := js.KeyValue(ctx, wire.BucketSchedules)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", wire.BucketSchedules, err)
	}
	cat, err := jobs.OpenCatalog(ctx, js)
	if err != nil {
		return nil, err
	}
	st := &Store{kv: kv, catalog: cat}
	if state, err := js.KeyValue(ctx, BucketState); err == nil {
		st.state = state
	}
	return st, nil
}

// Entry is a stored schedule with its KV revision.
type Entry struct {
	Schedule Schedule
	Revision uint64
	YAML     []byte
}

// Put validates s, checks that its job exists, and stores it with
// compare-and-set: revision 0 creates (jobs.ErrConflict when it exists),
// otherwise the stored revision must match.
func (st *Store) Put(ctx context.Context, s Schedule, revision uint64) (uint64, error) {
	if err := s.Validate(); err != nil {
		return 0, err
	}
	if _, err := st.catalog.Get(ctx, s.Job); err != nil {
		if errors.Is(err, jobs.ErrNotFound) {
			return 0, fmt.Errorf("schedule %s: job %q: %w", s.ID, s.Job, ErrUnknownJob)
		}
		return 0, err
	}
	b, err := s.YAML()
	if err != nil {
		return 0, err
	}
	var rev uint64
	if revision == 0 {
		rev, err = st.kv.Create(ctx, s.ID, b)
	} else {
		rev, err = st.kv.Update(ctx, s.ID, b, revision)
	}
	if err != nil {
		if jobs.IsCASConflict(err) {
			if revision == 0 {
				return 0, fmt.Errorf("schedule %s already exists: %w", s.ID, jobs.ErrConflict)
			}
			return 0, fmt.Errorf("schedule %s is no longer at revision %d: %w", s.ID, revision, jobs.ErrConflict)
		}
		return 0, fmt.Errorf("storing schedule %s: %w", s.ID, err)
	}
	return rev, nil
}

// Get returns one schedule, or jobs.ErrNotFound.
func (st *Store) Get(ctx context.Context, id string) (Entry, error) {
	if jobs.CheckID("schedule id", id) != nil {
		return Entry{}, fmt.Errorf("schedule %q: %w", id, jobs.ErrNotFound)
	}
	e, err := st.kv.Get(ctx, id)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return Entry{}, fmt.Errorf("schedule %s: %w", id, jobs.ErrNotFound)
		}
		return Entry{}, fmt.Errorf("reading schedule %s: %w", id, err)
	}
	s, err := ParseLenient(e.Value())
	if err != nil {
		return Entry{}, fmt.Errorf("schedule %s: %w", id, err)
	}
	return Entry{Schedule: s, Revision: e.Revision(), YAML: e.Value()}, nil
}

// List returns every schedule sorted by id; unreadable values are skipped
// and reported in the error.
func (st *Store) List(ctx context.Context) ([]Entry, error) {
	return kvcas.ReadAll(ctx, st.kv, st.Get, jobs.ErrNotFound)
}

// SetEnabled enables or disables a schedule (compare-and-set on the
// revision read).
func (st *Store) SetEnabled(ctx context.Context, id string, enabled bool) (uint64, error) {
	e, err := st.Get(ctx, id)
	if err != nil {
		return 0, err
	}
	e.Schedule.Enabled = enabled
	return st.Put(ctx, e.Schedule, e.Revision)
}

// Delete removes the schedule (compare-and-set when revision ≠ 0) and
// forgets what it fired, so a schedule created again with the same id
// starts afresh.
func (st *Store) Delete(ctx context.Context, id string, revision uint64) error {
	if _, err := st.Get(ctx, id); err != nil {
		return err
	}
	var opts []jetstream.KVDeleteOpt
	if revision != 0 {
		opts = append(opts, jetstream.LastRevision(revision))
	}
	if err := st.kv.Delete(ctx, id, opts...); err != nil {
		if jobs.IsCASConflict(err) {
			return fmt.Errorf("schedule %s is no longer at revision %d: %w", id, revision, jobs.ErrConflict)
		}
		return fmt.Errorf("deleting schedule %s: %w", id, err)
	}
	if st.state == nil {
		return nil
	}
	lister, err := st.state.ListKeysFiltered(ctx, stateCronKey(id), "p."+id+".>", "x."+id+".>")
	if err != nil {
		return fmt.Errorf("schedule %s deleted, but its state was not: %w", id, err)
	}
	var errs []error
	for k := range lister.Keys() {
		if err := st.state.Purge(ctx, k); err != nil {
			errs = append(errs, err)
		}
	}
	_ = lister.Stop()
	if len(errs) > 0 {
		return fmt.Errorf("schedule %s deleted, but its state was not: %w", id, errors.Join(errs...))
	}
	return nil
}

// FreezeKey is the fleet_config key that stops scheduled fires.
const FreezeKey = "freeze"

// ParseFreeze reads the value of fleet_config/freeze: true, "true" or
// {"frozen": true} freeze; false, "false", {"frozen": false} or an empty
// value do not. Anything else is treated as frozen (someone meant to stop
// something) and reported in the error.
func ParseFreeze(v []byte) (bool, error) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return false, nil
	}
	switch strings.ToLower(string(v)) {
	case "true", `"true"`:
		return true, nil
	case "false", `"false"`:
		return false, nil
	}
	var obj struct {
		Frozen *bool `json:"frozen"`
	}
	if json.Unmarshal(v, &obj) == nil && obj.Frozen != nil {
		return *obj.Frozen, nil
	}
	return true, fmt.Errorf("unrecognised freeze value %q (expected true, false or {\"frozen\": true}); treating the fleet as frozen", v)
}
