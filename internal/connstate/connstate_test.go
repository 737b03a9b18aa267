package connstate

import (
	"sync"
	"testing"
	"time"
)

// fakeClock is an injectable time source for Tracker.now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func withClock(tr *Tracker, at time.Time) *fakeClock {
	c := &fakeClock{t: at}
	tr.mu.Lock()
	tr.now = c.now
	tr.mu.Unlock()
	return c
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestStartsDisconnected(t *testing.T) {
	before := time.Now()
	tr := New()
	if tr.Connected() {
		t.Fatal("a new tracker reports connected before any connection")
	}
	// Disconnected since its creation: the staleness clock runs from boot.
	tr.mu.Lock()
	since := tr.disconnected
	tr.mu.Unlock()
	if since.Before(before) || since.After(time.Now()) {
		t.Errorf("disconnected since %v, want the creation time", since)
	}
	withClock(tr, since.Add(42*time.Second))
	if got := tr.DisconnectedFor(); got != 42*time.Second {
		t.Errorf("DisconnectedFor = %s, want 42s since creation", got)
	}
	if closed(tr.Reconnected()) {
		t.Error("Reconnected is closed before any connection")
	}
}

func TestDisconnectedForGrowsWhileDownAndIsZeroWhileUp(t *testing.T) {
	tr := New()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := withClock(tr, t0)

	tr.SetConnected()
	steps := []struct {
		name    string
		do      func()
		advance time.Duration
		up      bool
		want    time.Duration
	}{
		{"connected", nil, time.Hour, true, 0},
		{"link lost", tr.SetDisconnected, 0, false, 0},
		{"down 1s", nil, time.Second, false, time.Second},
		{"down 1m1s", nil, time.Minute, false, 61 * time.Second},
		// A second disconnect callback does not restart the clock.
		{"repeated disconnect", tr.SetDisconnected, 9 * time.Second, false, 70 * time.Second},
		{"back", tr.SetConnected, time.Hour, true, 0},
		{"lost again", tr.SetDisconnected, 3 * time.Second, false, 3 * time.Second},
	}
	for _, st := range steps {
		if st.do != nil {
			st.do()
		}
		c.advance(st.advance)
		if got := tr.Connected(); got != st.up {
			t.Errorf("%s: Connected = %v, want %v", st.name, got, st.up)
		}
		if got := tr.DisconnectedFor(); got != st.want {
			t.Errorf("%s: DisconnectedFor = %s, want %s", st.name, got, st.want)
		}
	}
}

func TestReconnectedClosesAndIsRenewed(t *testing.T) {
	tr := New()
	first := tr.Reconnected()
	if first != tr.Reconnected() {
		t.Fatal("Reconnected hands out different channels with no connection in between")
	}

	tr.SetConnected()
	if !closed(first) {
		t.Fatal("Reconnected channel not closed by SetConnected")
	}
	second := tr.Reconnected()
	if second == first || closed(second) {
		t.Fatal("after a connection Reconnected must hand out a new, open channel")
	}

	// A connected callback while already connected is no news.
	tr.SetConnected()
	if closed(second) {
		t.Error("SetConnected while connected closed the channel")
	}

	tr.SetDisconnected()
	if closed(second) {
		t.Error("SetDisconnected closed the channel")
	}
	tr.SetConnected()
	if !closed(second) {
		t.Error("reconnection did not close the channel handed out before it")
	}
	if third := tr.Reconnected(); third == second || closed(third) {
		t.Error("no fresh channel after the reconnection")
	}
}

func TestReconnectedWakesEveryWaiter(t *testing.T) {
	tr := New()
	const n = 10
	var ready, woken sync.WaitGroup
	ready.Add(n)
	for range n {
		woken.Go(func() {
			ch := tr.Reconnected()
			ready.Done()
			<-ch
		})
	}
	ready.Wait()
	tr.SetConnected()
	done := make(chan struct{})
	go func() { woken.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("not every waiter was woken by the connection")
	}
}
