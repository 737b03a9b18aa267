package bootstrap_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/wire"
)

// TestMoreThanAThousandWatchers: every KV watch is a consumer on the
// bucket's stream, and nats-server caps a stream at 1,000 consumers unless
// told otherwise. With the bootstrap's MaxConsumers, 1,100 watchers of
// agent_config all see a put.
func TestMoreThanAThousandWatchers(t *testing.T) {
	if testing.Short() {
		t.Skip("1,100 consumers")
	}
	srv := brokertest.Start(t)
	const conns, perConn = 11, 100
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var watchers []jetstream.KeyWatcher
	for range conns {
		js, err := jetstream.New(srv.Connect(t))
		if err != nil {
			t.Fatal(err)
		}
		kv, err := js.KeyValue(ctx, wire.BucketAgentConfig)
		if err != nil {
			t.Fatal(err)
		}
		for range perConn {
			w, err := kv.Watch(ctx, wire.ConfigKeyGlobal, jetstream.UpdatesOnly())
			if err != nil {
				t.Fatalf("watcher %d: %v", len(watchers)+1, err)
			}
			watchers = append(watchers, w)
		}
	}
	defer func() {
		for _, w := range watchers {
			_ = w.Stop()
		}
	}()

	js := srv.JetStream(t)
	kv, err := js.KeyValue(ctx, wire.BucketAgentConfig)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Put(ctx, wire.ConfigKeyGlobal, []byte(`{"heartbeat_interval":"45s"}`))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := 0
	for _, w := range watchers {
		wg.Go(func() {
			for {
				select {
				case e := <-w.Updates():
					if e != nil && e.Revision() == rev {
						mu.Lock()
						got++
						mu.Unlock()
						return
					}
				case <-ctx.Done():
					return
				}
			}
		})
	}
	wg.Wait()
	if got != conns*perConn {
		t.Fatalf("%d of %d watchers received the put", got, conns*perConn)
	}
}
