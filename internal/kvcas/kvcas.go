// Package kvcas reads and writes JetStream KV keys with compare-and-set on
// the revision, so that two operators (CLI or HTTP API) can never silently
// overwrite each other: every write names the revision it read, and a
// concurrent change makes the write fail with a *ConflictError.
package kvcas

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
)

// Value is one key as read: Revision 0 means absent (never written, or
// deleted).
type Value struct {
	Key      string
	Value    []byte
	Revision uint64
}

// Read returns key's current value and revision.
func Read(ctx context.Context, kv jetstream.KeyValue, key string) (Value, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Value{Key: key}, nil
	}
	if err != nil {
		return Value{}, fmt.Errorf("read %s/%s: %w", kv.Bucket(), key, err)
	}
	return Value{Key: key, Value: e.Value(), Revision: e.Revision()}, nil
}

// ConflictError: the key changed since it was read; nothing was written.
type ConflictError struct {
	Bucket, Key string
	// Read is the revision the caller read (0: the key was absent).
	Read uint64
}

func (e *ConflictError) Error() string {
	read := fmt.Sprintf("revision %d", e.Read)
	if e.Read == 0 {
		read = "it did not exist then"
	}
	return fmt.Sprintf("%s/%s was changed by someone else since it was read (%s); nothing written", e.Bucket, e.Key, read)
}

// IsConflict reports whether a KV write failed because the key is no
// longer at the expected revision.
func IsConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Put stores value at key only if the key is still at revision rev (0: it
// was absent, so it is created) and returns the new revision.
func Put(ctx context.Context, kv jetstream.KeyValue, key string, value []byte, rev uint64) (uint64, error) {
	var n uint64
	var err error
	if rev == 0 {
		n, err = kv.Create(ctx, key, value)
	} else {
		n, err = kv.Update(ctx, key, value, rev)
	}
	if IsConflict(err) {
		return 0, &ConflictError{Bucket: kv.Bucket(), Key: key, Read: rev}
	}
	if err != nil {
		return 0, fmt.Errorf("write %s/%s: %w", kv.Bucket(), key, err)
	}
	return n, nil
}

// Delete deletes key only if it is still at revision rev (> 0).
func Delete(ctx context.Context, kv jetstream.KeyValue, key string, rev uint64) error {
	if rev == 0 {
		return fmt.Errorf("delete %s/%s: no revision to check against", kv.Bucket(), key)
	}
	err := kv.Delete(ctx, key, jetstream.LastRevision(rev))
	if IsConflict(err) {
		return &ConflictError{Bucket: kv.Bucket(), Key: key, Read: rev}
	}
	if err != nil {
		return fmt.Errorf("delete %s/%s: %w", kv.Bucket(), key, err)
	}
	return nil
}

// ReadAll reads every live key of kv with get, in key order. Keys for
// which get fails with skip (deleted between the listing and the read) are
// left out; other failures are joined into the error, alongside the values
// that were read, so one bad entry never hides the others.
func ReadAll[T any](ctx context.Context, kv jetstream.KeyValue, get func(context.Context, string) (T, error), skip error) ([]T, error) {
	lister, err := kv.ListKeys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", kv.Bucket(), err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	_ = lister.Stop()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	slices.Sort(keys)
	var out []T
	var bad []error
	for _, k := range keys {
		v, err := get(ctx, k)
		switch {
		case errors.Is(err, skip):
		case err != nil:
			bad = append(bad, err)
		default:
			out = append(out, v)
		}
	}
	return out, errors.Join(bad...)
}
