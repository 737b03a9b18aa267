package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// floorSubject is the floor's broadcast subject (outside every stream).
const floorSubject = "kanade_bench.floor"

// floorReplySize stands for an ExecResult on the wire (about the size of
// a noop agent's result).
const floorReplySize = 400

// floor is n plain nats.go connections, each subscribed to one broadcast
// subject and replying at once: core request/reply, no JetStream, no disk.
// The time from one publish until all n replies are in is the physical
// floor of a fan-out over this broker on this machine.
type floor struct {
	url   string
	conns []*nats.Conn
}

// openFloor connects and subscribes n responders, a few at a time; each
// subscription is flushed, so every responder is live when it returns.
func openFloor(ctx context.Context, url string, n int) (*floor, error) {
	f := &floor{url: url, conns: make([]*nats.Conn, n)}
	reply := make([]byte, floorReplySize)
	const parallel = 32
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range parallel {
		wg.Go(func() {
			for i := range next {
				nc, err := nats.Connect(url, nats.Name("kanade-bench floor"), nats.NoReconnect())
				if err == nil {
					var sub *nats.Subscription
					sub, err = nc.Subscribe(floorSubject, func(m *nats.Msg) { _ = m.Respond(reply) })
					if err == nil {
						_ = sub.SetPendingLimits(-1, -1)
						err = nc.FlushTimeout(30 * time.Second)
					}
					if err != nil {
						nc.Close()
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("bench: floor responder %d: %w", i, err)
					}
					mu.Unlock()
					continue
				}
				f.conns[i] = nc
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		f.close()
		return nil, firstErr
	}
	return f, nil
}

// measure publishes one request per round (payload: a command's bytes)
// and returns the time until all n replies arrived, per round.
func (f *floor) measure(ctx context.Context, rounds int, payload []byte, timeout time.Duration) ([]time.Duration, error) {
	nc, err := nats.Connect(f.url, nats.Name("kanade-bench floor requester"))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	n := int64(len(f.conns))
	var out []time.Duration
	for r := range rounds {
		inbox := "_INBOX." + nuid.Next()
		var got atomic.Int64
		done := make(chan time.Time, 1)
		sub, err := nc.Subscribe(inbox, func(*nats.Msg) {
			if got.Add(1) == n {
				done <- time.Now()
			}
		})
		if err != nil {
			return nil, err
		}
		_ = sub.SetPendingLimits(-1, -1)
		if err := nc.Flush(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		if err := nc.PublishRequest(floorSubject, inbox, payload); err != nil {
			return nil, err
		}
		t := time.NewTimer(timeout)
		select {
		case end := <-done:
			out = append(out, end.Sub(t0))
		case <-t.C:
			err = fmt.Errorf("bench: floor round %d: %d of %d replies after %s", r+1, got.Load(), n, timeout)
		case <-ctx.Done():
			err = ctx.Err()
		}
		t.Stop()
		_ = sub.Unsubscribe()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// close disconnects every responder.
func (f *floor) close() {
	var wg sync.WaitGroup
	for _, nc := range f.conns {
		if nc != nil {
			wg.Go(nc.Close)
		}
	}
	wg.Wait()
}

// median of a non-empty set of durations.
func median(d []time.Duration) (time.Duration, error) {
	if len(d) == 0 {
		return 0, errors.New("bench: no samples")
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2], nil
}
