package bootstrap_test

import (
	"context"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/bootstrap"
	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/wire"
)

func TestSetupIsIdempotentAndReconciles(t *testing.T) {
	srv := brokertest.StartBare(t)
	js := srv.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	first, err := bootstrap.Setup(ctx, js, bootstrap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != len(bootstrap.Spec()) {
		t.Fatalf("got %d changes, want %d", len(first), len(bootstrap.Spec()))
	}
	for _, c := range first {
		if c.Action != bootstrap.Created {
			t.Errorf("first run: %s %s = %s, want created", c.Resource.Kind, c.Resource.Name, c.Action)
		}
	}

	second, err := bootstrap.Setup(ctx, js, bootstrap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range second {
		if c.Action != bootstrap.Unchanged {
			t.Errorf("second run: %s %s = %s %v, want unchanged", c.Resource.Kind, c.Resource.Name, c.Action, c.Fields)
		}
	}

	// A limit changed by hand is put back; the data stays.
	if _, err := js.Publish(ctx, wire.SubjectCommandsAll, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, wire.StreamExec)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxBytes = 1 << 20
	// EXEC of a version before direct gets: agents' reads could not be
	// scoped to their own subjects (internal/natsauth).
	cfg.AllowDirect = false
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	third, err := bootstrap.Setup(ctx, js, bootstrap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range third {
		want := bootstrap.Unchanged
		if c.Resource.Name == wire.StreamExec {
			want = bootstrap.Updated
		}
		if c.Action != want {
			t.Errorf("third run: %s = %s %v, want %s", c.Resource.Name, c.Action, c.Fields, want)
		}
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxBytes != 256<<20 || !info.Config.AllowDirect || info.State.Msgs != 1 {
		t.Errorf("EXEC after reconcile: max_bytes=%d allow_direct=%v msgs=%d, want 256MiB, direct gets and the message kept", info.Config.MaxBytes, info.Config.AllowDirect, info.State.Msgs)
	}
}

func TestKVStreamsAllowManyConsumers(t *testing.T) {
	srv := brokertest.Start(t)
	js := srv.JetStream(t)
	ctx := context.Background()
	for _, r := range bootstrap.Spec() {
		if r.Kind == bootstrap.KindStream {
			continue
		}
		s, err := js.Stream(ctx, r.StreamName())
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().Config.MaxConsumers; got != bootstrap.MaxConsumers {
			t.Errorf("%s max_consumers = %d, want %d", r.StreamName(), got, bootstrap.MaxConsumers)
		}
	}
	// The resources are usable through the ordinary APIs.
	kv, err := js.KeyValue(ctx, wire.BucketAgentConfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "global", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	obs, err := js.ObjectStore(ctx, wire.ObjectAgentReleases)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutBytes(ctx, "x", []byte("y")); err != nil {
		t.Fatal(err)
	}
	st, err := bootstrap.Inspect(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Missing {
			t.Errorf("%s missing", s.Resource.Name)
		}
		if (s.Resource.Name == wire.BucketAgentConfig || s.Resource.Name == wire.ObjectAgentReleases) && s.Keys != 1 {
			t.Errorf("%s keys = %d, want 1", s.Resource.Name, s.Keys)
		}
	}
}
