package agent

import (
	"container/list"
	"context"
	"sync"
)

// slots is the process-wide, first-in-first-out limit on concurrent runs
// (max_local_concurrent). FIFO matters: with a plain semaphore a burst of
// new commands can starve one that has waited longest.
type slots struct {
	mu      sync.Mutex
	limit   int
	used    int
	waiters list.List // of chan struct{}, oldest first
}

func newSlots(limit int) *slots {
	return &slots{limit: max(limit, 1)}
}

// acquire waits for a slot or for ctx to end (then it holds none).
func (s *slots) acquire(ctx context.Context) error {
	s.mu.Lock()
	if s.used < s.limit && s.waiters.Len() == 0 {
		s.used++
		s.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	el := s.waiters.PushBack(ch)
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		select {
		case <-ch:
			// Granted while we were giving up: pass it on.
			s.used--
			s.grantLocked()
		default:
			s.waiters.Remove(el)
		}
		return context.Cause(ctx)
	}
}

func (s *slots) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used--
	s.grantLocked()
}

// setLimit changes the limit live; running work is never interrupted.
func (s *slots) setLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limit = max(n, 1)
	s.grantLocked()
}

func (s *slots) grantLocked() {
	for s.used < s.limit && s.waiters.Len() > 0 {
		el := s.waiters.Front()
		s.waiters.Remove(el)
		s.used++
		close(el.Value.(chan struct{}))
	}
}
