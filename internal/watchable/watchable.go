// Package watchable holds a value that several goroutines read and react
// to: each reader gets the current value and a channel that is closed at
// the next change, so a consumer loop sleeps on that channel (or its own
// timer) and never polls.
package watchable

import "sync"

// Value is safe for concurrent use. The zero value holds the zero T.
type Value[T any] struct {
	mu      sync.Mutex
	v       T
	changed chan struct{}
}

// Get returns the current value and a channel closed when it changes.
func (w *Value[T]) Get() (T, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.changed == nil {
		w.changed = make(chan struct{})
	}
	return w.v, w.changed
}

// Set stores v and wakes every waiter.
func (w *Value[T]) Set(v T) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.v = v
	if w.changed != nil {
		close(w.changed)
	}
	w.changed = make(chan struct{})
}
