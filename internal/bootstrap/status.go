package bootstrap

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Status describes one resource as the server sees it now.
type Status struct {
	Resource  Resource
	Missing   bool
	Messages  uint64
	Bytes     uint64
	Consumers int
	// Keys counts live keys (KV) or objects (object store).
	Keys     int
	MaxBytes int64
	MaxAge   time.Duration
	// MaxMsgsPerSubject is the per-subject cap (-1: none).
	MaxMsgsPerSubject int64
	MaxConsumers      int
	Replicas          int
}

// Inspect reads the state of every resource of Spec.
func Inspect(ctx context.Context, js jetstream.JetStream) ([]Status, error) {
	var out []Status
	for _, r := range Spec() {
		st := Status{Resource: r}
		s, err := js.Stream(ctx, r.StreamName())
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			st.Missing = true
			out = append(out, st)
			continue
		}
		if err != nil {
			return out, err
		}
		info := s.CachedInfo()
		st.Messages, st.Bytes, st.Consumers = info.State.Msgs, info.State.Bytes, info.State.Consumers
		st.MaxBytes, st.MaxAge = info.Config.MaxBytes, info.Config.MaxAge
		st.MaxMsgsPerSubject, st.MaxConsumers, st.Replicas = info.Config.MaxMsgsPerSubject, info.Config.MaxConsumers, info.Config.Replicas
		switch r.Kind {
		case KindKV:
			kv, err := js.KeyValue(ctx, r.Name)
			if err != nil {
				return out, err
			}
			n, err := countKeys(ctx, kv)
			if err != nil {
				return out, err
			}
			st.Keys = n
		case KindObject:
			obs, err := js.ObjectStore(ctx, r.Name)
			if err != nil {
				return out, err
			}
			list, err := obs.List(ctx)
			if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
				return out, err
			}
			st.Keys = len(list)
		}
		out = append(out, st)
	}
	return out, nil
}

func countKeys(ctx context.Context, kv jetstream.KeyValue) (int, error) {
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for range lister.Keys() {
		n++
	}
	return n, nil
}
