package bench

import (
	"context"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
)

// dialAll opens n connections to url, 32 at a time (10,000 sequential
// dials take minutes; all at once is a connect storm, which is not what
// the floor or the rollout measure), and runs setup on each. On the first
// error it closes what it opened and returns that error, naming the
// connection as "what i".
func dialAll(ctx context.Context, url string, n int, what string, opts []nats.Option, setup func(i int, nc *nats.Conn) error) ([]*nats.Conn, error) {
	conns := make([]*nats.Conn, n)
	const parallel = 32
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range parallel {
		wg.Go(func() {
			for i := range next {
				nc, err := nats.Connect(url, opts...)
				if err == nil {
					if err = setup(i, nc); err != nil {
						nc.Close()
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("bench: %s %d: %w", what, i, err)
					}
					mu.Unlock()
					continue
				}
				conns[i] = nc
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
		closeAll(conns)
		return nil, firstErr
	}
	return conns, nil
}

// closeAll closes every open connection, in parallel.
func closeAll(conns []*nats.Conn) {
	var wg sync.WaitGroup
	for _, nc := range conns {
		if nc != nil {
			wg.Go(nc.Close)
		}
	}
	wg.Wait()
}
