package agent

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slotsWait polls cond (evaluated under s.mu) until it holds.
func slotsWait(t *testing.T, s *slots, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		ok := cond()
		s.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

func slotsQueued(t *testing.T, s *slots, n int) {
	t.Helper()
	slotsWait(t, s, "the waiter queue", func() bool { return s.waiters.Len() == n })
}

func slotsState(s *slots) (used, limit, waiting int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used, s.limit, s.waiters.Len()
}

// startWaiter calls acquire in a goroutine; its result arrives on the
// returned channel.
func startWaiter(ctx context.Context, s *slots) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- s.acquire(ctx) }()
	return ch
}

func mustAcquire(t *testing.T, s *slots) {
	t.Helper()
	if err := s.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// stillWaiting fails the test if the waiter has returned.
func stillWaiting(t *testing.T, ch <-chan error) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("waiter returned early (%v)", err)
	default:
	}
}

func recvErr(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("waiter never returned")
		return nil
	}
}

func TestSlotsNewSlotsLimitAtLeastOne(t *testing.T) {
	for _, n := range []int{-5, 0, 1, 4} {
		s := newSlots(n)
		if want := max(n, 1); s.limit != want {
			t.Errorf("newSlots(%d).limit = %d, want %d", n, s.limit, want)
		}
	}
}

func TestSlotsFIFOOrder(t *testing.T) {
	s := newSlots(1)
	mustAcquire(t, s) // the holder

	const n = 10
	order := make(chan int, n)
	done := make(chan struct{}, n)
	for i := range n {
		go func() {
			if err := s.acquire(context.Background()); err != nil {
				t.Error(err)
				return
			}
			order <- i
			s.release()
			done <- struct{}{}
		}()
		slotsQueued(t, s, i+1) // waiter i is queued before i+1 starts
	}

	s.release()
	for range n {
		<-done
	}
	close(order)
	want := 0
	for got := range order {
		if got != want {
			t.Fatalf("waiter %d ran in position %d: not first in, first out", got, want)
		}
		want++
	}
	if want != n {
		t.Fatalf("%d waiters ran, want %d", want, n)
	}
	if used, _, waiting := slotsState(s); used != 0 || waiting != 0 {
		t.Errorf("after all released: used %d, waiting %d; want 0, 0", used, waiting)
	}
}

// A release hands the slot to the oldest waiter directly: a newcomer
// arriving at that moment cannot take it.
func TestSlotsNoBargingPastWaiters(t *testing.T) {
	s := newSlots(1)
	mustAcquire(t, s)
	first := startWaiter(context.Background(), s)
	slotsQueued(t, s, 1)

	s.release()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.acquire(cancelled); err == nil {
		t.Fatal("a newcomer took the slot released for the queued waiter")
	}
	if err := recvErr(t, first); err != nil {
		t.Fatalf("queued waiter: %v", err)
	}
	if used, _, waiting := slotsState(s); used != 1 || waiting != 0 {
		t.Errorf("used %d, waiting %d; want 1, 0", used, waiting)
	}
}

func TestSlotsLimitRespectedUnderConcurrency(t *testing.T) {
	for _, limit := range []int{1, 3, 7} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			s := newSlots(limit)
			var cur, peak, ran atomic.Int64
			var wg sync.WaitGroup
			for range 50 {
				wg.Go(func() {
					if err := s.acquire(context.Background()); err != nil {
						t.Error(err)
						return
					}
					n := cur.Add(1)
					for {
						p := peak.Load()
						if n <= p || peak.CompareAndSwap(p, n) {
							break
						}
					}
					for range 10 {
						runtime.Gosched()
					}
					ran.Add(1)
					cur.Add(-1)
					s.release()
				})
			}
			wg.Wait()
			if p := peak.Load(); p > int64(limit) {
				t.Errorf("peak concurrency %d exceeds the limit %d", p, limit)
			}
			if ran.Load() != 50 {
				t.Errorf("%d of 50 ran", ran.Load())
			}
			if used, _, waiting := slotsState(s); used != 0 || waiting != 0 {
				t.Errorf("after all released: used %d, waiting %d; want 0, 0", used, waiting)
			}
		})
	}
}

func TestSlotsCancelledWaiterLeavesQueueWithoutASlot(t *testing.T) {
	s := newSlots(1)
	mustAcquire(t, s)

	cause := errors.New("command killed while queued")
	ctxA, cancelA := context.WithCancelCause(context.Background())
	a := startWaiter(ctxA, s)
	slotsQueued(t, s, 1)
	b := startWaiter(context.Background(), s)
	slotsQueued(t, s, 2)

	cancelA(cause)
	if err := recvErr(t, a); !errors.Is(err, cause) {
		t.Fatalf("cancelled waiter returned %v, want its context's cause %v", err, cause)
	}
	slotsQueued(t, s, 1)
	if used, _, _ := slotsState(s); used != 1 {
		t.Fatalf("used = %d after a cancelled wait, want 1 (the holder only)", used)
	}
	stillWaiting(t, b)

	s.release() // the holder's slot goes to b, not to the departed a
	if err := recvErr(t, b); err != nil {
		t.Fatalf("remaining waiter: %v", err)
	}
	s.release()
	if used, _, waiting := slotsState(s); used != 0 || waiting != 0 {
		t.Errorf("after all released: used %d, waiting %d; want 0, 0 (no slot leaked)", used, waiting)
	}
}

// blockedInAcquireLock reports whether a goroutine is parked on s.mu inside
// acquire (the cancelled waiter's clean-up path).
func blockedInAcquireLock() bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		header, _, _ := strings.Cut(g, "\n")
		if strings.Contains(header, "[sync.Mutex.Lock") && strings.Contains(g, "(*slots).acquire") {
			return true
		}
	}
	return false
}

// The waiter gives up (ctx) at the very moment it is granted the slot: it
// must pass the slot on to the next waiter rather than leak it.
func TestSlotsGrantRacingCancelPassesSlotOn(t *testing.T) {
	s := newSlots(1)
	mustAcquire(t, s)
	cause := errors.New("gave up")
	ctxA, cancelA := context.WithCancelCause(context.Background())
	a := startWaiter(ctxA, s)
	slotsQueued(t, s, 1)
	b := startWaiter(context.Background(), s)
	slotsQueued(t, s, 2)

	// Hold the lock, cancel a, and wait until a has taken the ctx branch
	// and is parked on the lock; then grant it the slot (as release does)
	// before letting it in.
	s.mu.Lock()
	cancelA(cause)
	deadline := time.Now().Add(10 * time.Second)
	for !blockedInAcquireLock() {
		if time.Now().After(deadline) {
			s.mu.Unlock()
			t.Fatal("the cancelled waiter never reached its clean-up")
		}
		runtime.Gosched()
	}
	s.used--
	s.grantLocked()
	s.mu.Unlock()

	if err := recvErr(t, a); !errors.Is(err, cause) {
		t.Fatalf("waiter granted while giving up returned %v, want its cause", err)
	}
	if err := recvErr(t, b); err != nil {
		t.Fatalf("next waiter did not receive the passed-on slot: %v", err)
	}
	if used, _, waiting := slotsState(s); used != 1 || waiting != 0 {
		t.Errorf("used %d, waiting %d; want 1 (b), 0", used, waiting)
	}
	s.release()
	if used, _, _ := slotsState(s); used != 0 {
		t.Errorf("used = %d after b released, want 0", used)
	}
}

func TestSlotsRaisingLimitWakesWaitersInOrder(t *testing.T) {
	s := newSlots(1)
	mustAcquire(t, s)
	var ws []<-chan error
	for i := range 3 {
		ws = append(ws, startWaiter(context.Background(), s))
		slotsQueued(t, s, i+1)
	}

	s.setLimit(3) // two more slots: the two oldest waiters
	for _, w := range ws[:2] {
		if err := recvErr(t, w); err != nil {
			t.Fatal(err)
		}
	}
	stillWaiting(t, ws[2])
	if used, limit, waiting := slotsState(s); used != 3 || limit != 3 || waiting != 1 {
		t.Fatalf("used %d, limit %d, waiting %d; want 3, 3, 1", used, limit, waiting)
	}

	s.setLimit(4)
	if err := recvErr(t, ws[2]); err != nil {
		t.Fatal(err)
	}
	if used, _, waiting := slotsState(s); used != 4 || waiting != 0 {
		t.Errorf("used %d, waiting %d; want 4, 0", used, waiting)
	}
}

func TestSlotsLoweringLimitNeverInterruptsHolders(t *testing.T) {
	s := newSlots(3)
	// Holders run with a context the slots never see: the only way to
	// interrupt them would be to make acquire fail, which already returned.
	for range 3 {
		mustAcquire(t, s)
	}
	s.setLimit(0) // clamps to 1
	if used, limit, _ := slotsState(s); used != 3 || limit != 1 {
		t.Fatalf("after lowering: used %d, limit %d; want 3 (holders keep running), 1", used, limit)
	}

	w := startWaiter(context.Background(), s)
	slotsQueued(t, s, 1)
	for want := 2; want >= 1; want-- {
		s.release()
		if used, _, waiting := slotsState(s); used != want || waiting != 1 {
			t.Fatalf("after a release: used %d, waiting %d; want %d, 1 (still over the new limit)", used, waiting, want)
		}
		stillWaiting(t, w)
	}
	s.release() // the last of the old holders: now below the limit
	if err := recvErr(t, w); err != nil {
		t.Fatal(err)
	}
	if used, _, _ := slotsState(s); used != 1 {
		t.Errorf("used = %d, want 1", used)
	}
}
