// Package connstate tracks the agent's link to the broker: whether it is
// connected, since when it has been disconnected (the staleness of every
// cached KV value), and a wake-up signal on each reconnect so that waiting
// retry loops and the outbox try again at once instead of at their next
// backoff tick.
package connstate

import (
	"sync"
	"time"
)

// Tracker is fed by the NATS connection callbacks. Safe for concurrent use.
type Tracker struct {
	mu           sync.Mutex
	connected    bool
	disconnected time.Time // when the link went down; zero while connected
	reconnect    chan struct{}
	disconnect   chan struct{}
	now          func() time.Time
}

// New returns a tracker that starts disconnected (since now): the agent
// has seen nothing from the broker yet.
func New() *Tracker {
	return &Tracker{disconnected: time.Now(), reconnect: make(chan struct{}), disconnect: make(chan struct{}), now: time.Now}
}

// SetConnected records a (re)connection and wakes every waiter.
func (t *Tracker) SetConnected() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.connected {
		return
	}
	t.connected = true
	t.disconnected = time.Time{}
	close(t.reconnect)
	t.reconnect = make(chan struct{})
}

// SetDisconnected records the loss of the link.
func (t *Tracker) SetDisconnected() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.connected {
		return
	}
	t.connected = false
	t.disconnected = t.now()
	close(t.disconnect)
	t.disconnect = make(chan struct{})
}

// Disconnected returns a channel closed at the next loss of the link.
func (t *Tracker) Disconnected() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.disconnect
}

// Connected reports the current state.
func (t *Tracker) Connected() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.connected
}

// DisconnectedFor is how long the link has been down; 0 while connected.
func (t *Tracker) DisconnectedFor() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.connected {
		return 0
	}
	return t.now().Sub(t.disconnected)
}

// Reconnected returns a channel closed at the next (re)connection.
func (t *Tracker) Reconnected() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.reconnect
}
