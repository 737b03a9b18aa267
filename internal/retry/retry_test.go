package retry_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/connstate"
	"github.com/kanade-project/kanade/internal/logtest"
	"github.com/kanade-project/kanade/internal/retry"
)

var errNotYet = errors.New("bucket not found")

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestDefaultPolicy(t *testing.T) {
	p := retry.Default()
	if p.Min != time.Second || p.Max != 300*time.Second || p.Jitter != 0.25 {
		t.Errorf("Default() = %+v, want 1s → 300s, ±25 %%", p)
	}
}

func TestPolicyDelayGrowsAndCaps(t *testing.T) {
	s := time.Second
	tests := []struct {
		name string
		p    retry.Policy
		want []time.Duration // Delay(1), Delay(2), …
	}{
		{
			name: "default schedule without jitter",
			p:    retry.Policy{Min: s, Max: 300 * s},
			want: []time.Duration{1 * s, 2 * s, 4 * s, 8 * s, 16 * s, 32 * s, 64 * s, 128 * s, 256 * s, 300 * s, 300 * s, 300 * s},
		},
		{
			name: "cap reached exactly",
			p:    retry.Policy{Min: 100 * time.Millisecond, Max: 400 * time.Millisecond},
			want: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond},
		},
		{
			name: "min above max",
			p:    retry.Policy{Min: 10 * s, Max: 5 * s},
			want: []time.Duration{5 * s, 5 * s},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i, want := range tc.want {
				if got := tc.p.Delay(i + 1); got != want {
					t.Errorf("Delay(%d) = %s, want %s", i+1, got, want)
				}
			}
			// Far past the cap: no overflow, no negative delay.
			for _, n := range []int{64, 1000, 1 << 30} {
				if got := tc.p.Delay(n); got != tc.p.Max {
					t.Errorf("Delay(%d) = %s, want the cap %s", n, got, tc.p.Max)
				}
			}
		})
	}
}

func TestPolicyDelayJitterWithin25Percent(t *testing.T) {
	p := retry.Default()
	base := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300}
	for i, b := range base {
		n := i + 1
		b *= time.Second
		lo, hi := time.Duration(float64(b)*0.75), time.Duration(float64(b)*1.25)
		var below, above bool
		for range 500 {
			d := p.Delay(n)
			if d < lo || d > hi {
				t.Fatalf("Delay(%d) = %s, outside [%s, %s]", n, d, lo, hi)
			}
			below = below || d < b
			above = above || d > b
		}
		// 500 draws all on one side of the base has probability 2^-500:
		// the jitter really spreads both ways.
		if !below || !above {
			t.Errorf("Delay(%d): jitter only on one side of %s (below %v, above %v)", n, b, below, above)
		}
	}
}

func TestForeverReturnsAtFirstSuccess(t *testing.T) {
	var calls int
	v, err := retry.Forever(context.Background(), retry.Policy{Min: time.Hour, Max: time.Hour}, quiet(), "kv", nil, func(context.Context) (string, error) {
		calls++
		return "bucket", nil
	})
	if err != nil || v != "bucket" || calls != 1 {
		t.Errorf("Forever = %q, %v after %d calls; want bucket, nil, 1", v, err, calls)
	}
}

func TestForeverRetriesOnError(t *testing.T) {
	var logs logtest.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var calls int
	v, err := retry.Forever(context.Background(), retry.Policy{Min: time.Millisecond, Max: 2 * time.Millisecond}, log, "stream EXEC", nil, func(context.Context) (int, error) {
		calls++
		if calls < 5 {
			return 0, errNotYet
		}
		return 42, nil
	})
	if err != nil || v != 42 {
		t.Fatalf("Forever = %d, %v; want 42, nil", v, err)
	}
	if calls != 5 {
		t.Errorf("fn called %d times, want 5 (4 failures, then success)", calls)
	}
	// Quiet for the first failures, a warning from the third, and a note
	// on success.
	var levels []string
	for line := range strings.Lines(logs.String()) {
		lvl, _, _ := strings.Cut(line[strings.Index(line, "level=")+len("level="):], " ")
		levels = append(levels, lvl)
	}
	want := []string{"DEBUG", "DEBUG", "WARN", "WARN", "INFO"}
	if strings.Join(levels, ",") != strings.Join(want, ",") {
		t.Errorf("log levels = %v, want %v\n%s", levels, want, logs.String())
	}
}

func TestForeverReturnsContextError(t *testing.T) {
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		// stop runs beside Forever; attempted is closed at the first
		// attempt.
		stop func(cancel context.CancelFunc, attempted <-chan struct{})
		want error
	}{
		{
			name: "cancelled while waiting",
			ctx:  func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			stop: func(cancel context.CancelFunc, attempted <-chan struct{}) { <-attempted; cancel() },
			want: context.Canceled,
		},
		{
			name: "deadline while waiting",
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 50*time.Millisecond)
			},
			stop: func(context.CancelFunc, <-chan struct{}) {},
			want: context.DeadlineExceeded,
		},
		{
			name: "already cancelled",
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, cancel
			},
			stop: func(context.CancelFunc, <-chan struct{}) {},
			want: context.Canceled,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			attempted := make(chan struct{})
			var once sync.Once
			var calls atomic.Int64
			go tc.stop(cancel, attempted)
			// An hour between attempts: only the context can end it.
			_, err := retry.Forever(ctx, retry.Policy{Min: time.Hour, Max: time.Hour}, quiet(), "kv", nil, func(context.Context) (int, error) {
				calls.Add(1)
				once.Do(func() { close(attempted) })
				return 0, errNotYet
			})
			if !errors.Is(err, tc.want) {
				t.Errorf("Forever = %v, want %v", err, tc.want)
			}
			if n := calls.Load(); n != 1 {
				t.Errorf("fn called %d times, want 1", n)
			}
		})
	}
}

func TestForeverWakeCutsTheWaitShort(t *testing.T) {
	wake := make(chan struct{})
	attempted := make(chan struct{})
	var calls atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		<-attempted
		close(wake)
	}()
	// An hour between attempts: only the wake channel can bring the
	// second one forward before the 10 s test deadline.
	v, err := retry.Forever(ctx, retry.Policy{Min: time.Hour, Max: time.Hour}, quiet(), "kv", func() <-chan struct{} { return wake }, func(context.Context) (string, error) {
		if calls.Add(1) == 1 {
			close(attempted)
			return "", errNotYet
		}
		return "ok", nil
	})
	if err != nil || v != "ok" {
		t.Fatalf("Forever = %q, %v; want the second attempt's success", v, err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("fn called %d times, want 2", n)
	}
}

// A reconnection while an attempt is running (often why it failed) must
// still cut the following wait short.
func TestForeverWakeDuringAttemptIsNotLost(t *testing.T) {
	link := connstate.New()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var calls int
	v, err := retry.Forever(ctx, retry.Policy{Min: time.Hour, Max: time.Hour}, quiet(), "kv", link.Reconnected, func(context.Context) (string, error) {
		calls++
		if calls == 1 {
			link.SetConnected() // the broker comes back mid-attempt
			return "", errNotYet
		}
		return "ok", nil
	})
	if err != nil || v != "ok" || calls != 2 {
		t.Fatalf("Forever = %q, %v after %d calls; want ok after 2 (the reconnect was lost)", v, err, calls)
	}
}
