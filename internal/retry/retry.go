// Package retry acquires things that may not exist yet — a KV bucket, a
// stream, an object store, a subscription — and never gives up: the agent
// must start and keep working whatever the broker's state at boot.
//
// Forever retries with exponential backoff (1 s doubling to 300 s, ±25 %
// jitter so a fleet that lost the broker together does not return
// together), woken early by a reconnect. Only the context ends it.
package retry

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Policy is a backoff schedule.
type Policy struct {
	Min, Max time.Duration
	// Jitter is the ± fraction applied to each delay (0.25 = ±25 %).
	Jitter float64
}

// Default is the agent's schedule for acquiring JetStream resources.
func Default() Policy { return Policy{Min: time.Second, Max: 300 * time.Second, Jitter: 0.25} }

// Delay returns the jittered delay before attempt n (1-based).
func (p Policy) Delay(n int) time.Duration {
	d := p.Min
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	if p.Jitter > 0 {
		f := 1 - p.Jitter + rand.Float64()*2*p.Jitter
		d = time.Duration(float64(d) * f)
	}
	return d
}

// Forever calls fn until it succeeds or ctx ends. wake, when it returns a
// channel, cuts the current wait short (pass connstate's Reconnected).
// Failures are logged with what, at Debug for the first few and Warn after.
func Forever[T any](ctx context.Context, p Policy, log *slog.Logger, what string, wake func() <-chan struct{}, fn func(context.Context) (T, error)) (T, error) {
	for n := 1; ; n++ {
		// Take the wake channel before the attempt: a reconnection while
		// fn runs (often the reason it failed) must still cut the wait
		// short, and a channel taken after fn would miss it.
		var w <-chan struct{}
		if wake != nil {
			w = wake()
		}
		v, err := fn(ctx)
		if err == nil {
			if n > 1 {
				log.Info("acquired after retries", "what", what, "attempts", n)
			}
			return v, nil
		}
		if ctx.Err() != nil {
			var zero T
			return zero, ctx.Err()
		}
		d := p.Delay(n)
		lvl := slog.LevelDebug
		if n >= 3 {
			lvl = slog.LevelWarn
		}
		log.Log(ctx, lvl, "not available yet; retrying", "what", what, "attempt", n, "retry_in", d.Round(time.Millisecond), "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			var zero T
			return zero, ctx.Err()
		case <-w:
			t.Stop()
		case <-t.C:
		}
	}
}
