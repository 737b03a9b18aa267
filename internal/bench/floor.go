package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// floorSubject is the floor's broadcast subject (outside every stream).
const floorSubject = "kanade_bench.floor"

// floorReplySize stands for an ExecResult on the wire (about the size of
// a noop agent's result).
const floorReplySize = 400

// Stored floor: the stream the stored floor's responders publish into, set
// up like RESULTS (file storage, one replica) and deleted after.
const (
	storedFloorStream  = "KANADE_BENCH_FLOOR"
	storedFloorSubject = "kanade_bench.stored"
)

// floor is n plain nats.go connections, each subscribed to one broadcast
// subject and replying at once: core request/reply, no JetStream, no disk.
// The time from one publish until all n replies are in is the physical
// floor of a fan-out over this broker on this machine.
//
// A stored floor's responders first publish their reply into a JetStream
// stream and wait for its PubAck, then reply: the least any agent can do
// under the protocol contract (a result counts once JetStream acknowledged
// it), with no decode, no ledger, no outbox and no process. It separates
// what the agent costs from what storing 10,000 results costs the broker.
type floor struct {
	url   string
	conns []*nats.Conn
}

// openFloor connects and subscribes n responders, a few at a time; each
// subscription is flushed, so every responder is live when it returns.
// stored makes it a stored floor (the stream must exist).
func openFloor(ctx context.Context, url string, n int, stored bool) (*floor, error) {
	reply := make([]byte, floorReplySize)
	conns, err := dialAll(ctx, url, n, "floor responder", []nats.Option{nats.Name("kanade-bench floor"), nats.NoReconnect()},
		func(i int, nc *nats.Conn) error {
			respond := func(m *nats.Msg) { _ = m.Respond(reply) }
			if stored {
				js, err := jetstream.New(nc)
				if err != nil {
					return err
				}
				subj := fmt.Sprintf("%s.%d", storedFloorSubject, i)
				respond = func(m *nats.Msg) {
					c, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					if _, err := js.Publish(c, subj, reply); err != nil {
						return // the round times out and says how many replied
					}
					_ = m.Respond(nil)
				}
			}
			sub, err := nc.Subscribe(floorSubject, respond)
			if err != nil {
				return err
			}
			_ = sub.SetPendingLimits(-1, -1)
			return nc.FlushTimeout(30 * time.Second)
		})
	if err != nil {
		return nil, err
	}
	return &floor{url: url, conns: conns}, nil
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
func (f *floor) close() { closeAll(f.conns) }

// median of a non-empty set of durations.
func median(d []time.Duration) (time.Duration, error) {
	if len(d) == 0 {
		return 0, errors.New("bench: no samples")
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2], nil
}
