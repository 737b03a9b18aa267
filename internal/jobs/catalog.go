package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/kvcas"
	"github.com/kanade-project/kanade/internal/wire"
)

// ErrNotFound: no such job (or schedule, or execution).
var ErrNotFound = errors.New("not found")

// ErrConflict: a compare-and-set write lost: the entry was created, changed
// or deleted since the revision the caller read. Re-read and retry.
var ErrConflict = errors.New("conflict: changed since it was read")

// Catalog is the job catalog over KV "jobs": key = job id, value = the
// manifest's canonical YAML.
type Catalog struct {
	kv jetstream.KeyValue
}

// OpenCatalog opens the jobs bucket (created by the bootstrap).
func OpenCatalog(ctx context.Context, js jetstream.JetStream) (*Catalog, error) {
	kv, err := js.KeyValue(ctx, wire.BucketJobs)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", wire.BucketJobs, err)
	}
	return &Catalog{kv: kv}, nil
}

// Entry is a stored manifest with its KV revision (for compare-and-set).
type Entry struct {
	Manifest Manifest
	Revision uint64
	// YAML is the stored value.
	YAML []byte
}

// Put stores m with compare-and-set: revision 0 creates the job and fails
// with ErrConflict when it exists; otherwise the stored revision must be
// exactly revision. It returns the new revision. m is validated first.
func (c *Catalog) Put(ctx context.Context, m Manifest, revision uint64) (uint64, error) {
	if err := m.Validate(); err != nil {
		return 0, err
	}
	b, err := m.YAML()
	if err != nil {
		return 0, err
	}
	var rev uint64
	if revision == 0 {
		rev, err = c.kv.Create(ctx, m.ID, b)
	} else {
		rev, err = c.kv.Update(ctx, m.ID, b, revision)
	}
	if err != nil {
		if IsCASConflict(err) {
			if revision == 0 {
				return 0, fmt.Errorf("job %s already exists: %w", m.ID, ErrConflict)
			}
			return 0, fmt.Errorf("job %s is no longer at revision %d: %w", m.ID, revision, ErrConflict)
		}
		return 0, fmt.Errorf("storing job %s: %w", m.ID, err)
	}
	return rev, nil
}

// IsCASConflict reports whether err is a lost KV compare-and-set (Create on
// an existing key, Update or Delete at a stale revision).
func IsCASConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Get returns the job called id, or ErrNotFound.
func (c *Catalog) Get(ctx context.Context, id string) (Entry, error) {
	if err := CheckID("job id", id); err != nil {
		return Entry{}, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	e, err := c.kv.Get(ctx, id)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return Entry{}, fmt.Errorf("job %s: %w", id, ErrNotFound)
		}
		return Entry{}, fmt.Errorf("reading job %s: %w", id, err)
	}
	m, err := ParseLenient(e.Value())
	if err != nil {
		return Entry{}, fmt.Errorf("job %s: %w", id, err)
	}
	return Entry{Manifest: m, Revision: e.Revision(), YAML: e.Value()}, nil
}

// List returns every job, sorted by id. A stored value that does not
// decode is skipped and reported in the error list alongside the jobs.
func (c *Catalog) List(ctx context.Context) ([]Entry, error) {
	return kvcas.ReadAll(ctx, c.kv, c.Get, ErrNotFound)
}

// Delete removes the job. A non-zero revision makes it a compare-and-set.
func (c *Catalog) Delete(ctx context.Context, id string, revision uint64) error {
	if _, err := c.Get(ctx, id); err != nil {
		return err
	}
	var opts []jetstream.KVDeleteOpt
	if revision != 0 {
		opts = append(opts, jetstream.LastRevision(revision))
	}
	if err := c.kv.Delete(ctx, id, opts...); err != nil {
		if IsCASConflict(err) {
			return fmt.Errorf("job %s is no longer at revision %d: %w", id, revision, ErrConflict)
		}
		return fmt.Errorf("deleting job %s: %w", id, err)
	}
	return nil
}
