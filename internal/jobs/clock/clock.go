// Package clock lets the executor and the scheduler sleep on timers that
// tests can drive: production code uses Real; tests use a Fake whose time
// only moves when the test advances it, so "fires at 03:00 Europe/Paris" is
// checked without waiting for 03:00.
package clock

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Clock tells the time and makes timers.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once, d from now.
	NewTimer(d time.Duration) Timer
	// TimerAt returns a timer that fires once at t (at once if t has
	// passed). Loops that sleep until a computed time use it rather than
	// NewTimer(t.Sub(Now())), which would read the clock twice.
	TimerAt(t time.Time) Timer
}

// Timer is a one-shot timer.
type Timer interface {
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it did.
	Stop() bool
}

// Real is the wall clock.
func Real() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

func (realClock) TimerAt(t time.Time) Timer { return realTimer{time.NewTimer(time.Until(t))} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }

// Or returns c, or the wall clock when c is nil.
func Or(c Clock) Clock {
	if c == nil {
		return Real()
	}
	return c
}

// Fake is a manual clock for tests. Timers fire when Advance or Set moves
// the time to or past their deadline.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	timers  map[*fakeTimer]struct{}
	changed chan struct{} // closed and replaced whenever the timer set changes
}

// NewFake returns a fake clock set to t.
func NewFake(t time.Time) *Fake {
	return &Fake{now: t, timers: map[*fakeTimer]struct{}{}, changed: make(chan struct{})}
}

type fakeTimer struct {
	f        *Fake
	deadline time.Time
	c        chan time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	if _, ok := t.f.timers[t]; !ok {
		return false
	}
	delete(t.f.timers, t)
	t.f.notifyLocked()
	return true
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTimer makes a timer that fires when the fake time reaches now+d.
func (f *Fake) NewTimer(d time.Duration) Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.timerAtLocked(f.now.Add(d))
}

// TimerAt makes a timer that fires when the fake time reaches t.
func (f *Fake) TimerAt(t time.Time) Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.timerAtLocked(t)
}

func (f *Fake) timerAtLocked(deadline time.Time) Timer {
	t := &fakeTimer{f: f, deadline: deadline, c: make(chan time.Time, 1)}
	if !deadline.After(f.now) {
		t.c <- f.now
		return t
	}
	f.timers[t] = struct{}{}
	f.notifyLocked()
	return t
}

func (f *Fake) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// Advance moves the time forward by d and fires the timers that are due.
func (f *Fake) Advance(d time.Duration) { f.Set(f.Now().Add(d)) }

// Set moves the time to t (never backwards) and fires the timers that are due.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.After(f.now) {
		f.now = t
	}
	fired := false
	for tm := range f.timers {
		if !tm.deadline.After(f.now) {
			delete(f.timers, tm)
			tm.c <- f.now
			fired = true
		}
	}
	if fired {
		f.notifyLocked()
	}
}

// Deadlines returns the deadlines of the pending timers, earliest first.
func (f *Fake) Deadlines() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []time.Time
	for t := range f.timers {
		out = append(out, t.deadline)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// WaitFor blocks until ok accepts the deadlines of the pending timers
// (earliest first) — typically: a loop has gone to sleep until some time —
// or ctx ends. ok runs without the clock's lock held.
func (f *Fake) WaitFor(ctx context.Context, ok func(deadlines []time.Time) bool) error {
	for {
		f.mu.Lock()
		ch := f.changed
		f.mu.Unlock()
		if ok(f.Deadlines()) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("clock: %w (pending timers: %v)", ctx.Err(), f.Deadlines())
		}
	}
}

// WaitForTimerAt blocks until at least n timers (default 1) are pending
// with exactly deadline t.
func (f *Fake) WaitForTimerAt(ctx context.Context, t time.Time, n ...int) error {
	want := 1
	if len(n) > 0 {
		want = n[0]
	}
	return f.WaitFor(ctx, func(ds []time.Time) bool {
		k := 0
		for _, d := range ds {
			if d.Equal(t) {
				k++
			}
		}
		return k >= want
	})
}
