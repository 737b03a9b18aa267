//go:build windows

package service

import (
	"context"
	"testing"
	"time"

	"golang.org/x/sys/windows/svc"
)

// execute runs h.Execute the way svc.Run does, with channels instead of the
// SCM, and returns them.
func execute(t *testing.T, h *handler) (chan svc.ChangeRequest, chan svc.Status, chan [2]uint32) {
	t.Helper()
	reqs := make(chan svc.ChangeRequest)
	status := make(chan svc.Status)
	result := make(chan [2]uint32, 1)
	go func() {
		ssec, code := h.Execute(nil, reqs, status)
		b := uint32(0)
		if ssec {
			b = 1
		}
		result <- [2]uint32{b, code}
	}()
	return reqs, status, result
}

func expectState(t *testing.T, status <-chan svc.Status, want svc.State) svc.Status {
	t.Helper()
	select {
	case s := <-status:
		if s.State != want {
			t.Fatalf("status %v, want %v", s.State, want)
		}
		return s
	case <-time.After(10 * time.Second):
		t.Fatalf("no status report, want %v", want)
	}
	return svc.Status{}
}

func TestServiceStopCancelsAndReportsExitCode(t *testing.T) {
	started := make(chan struct{})
	h := &handler{fn: func(ctx context.Context) int {
		close(started)
		<-ctx.Done()
		return 64
	}}
	reqs, status, result := execute(t, h)
	expectState(t, status, svc.StartPending)
	running := expectState(t, status, svc.Running)
	if running.Accepts != svc.AcceptStop|svc.AcceptShutdown {
		t.Errorf("accepts %v, want stop and shutdown", running.Accepts)
	}
	<-started
	reqs <- svc.ChangeRequest{Cmd: svc.Interrogate}
	expectState(t, status, svc.Running)
	reqs <- svc.ChangeRequest{Cmd: svc.Stop}
	if s := expectState(t, status, svc.StopPending); s.WaitHint == 0 {
		t.Error("StopPending without a wait hint")
	}
	select {
	case r := <-result:
		if r != [2]uint32{1, 64} {
			t.Errorf("Execute returned %v, want service-specific exit code 64", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Execute did not return after the run function did")
	}
	if h.code != 64 {
		t.Errorf("code = %d, want 64", h.code)
	}
}

// While the run function takes its time to stop, the handler keeps
// answering the SCM and reports progress.
func TestServiceSlowStopReportsProgress(t *testing.T) {
	release := make(chan struct{})
	h := &handler{fn: func(ctx context.Context) int {
		<-ctx.Done()
		<-release
		return 0
	}}
	reqs, status, result := execute(t, h)
	expectState(t, status, svc.StartPending)
	expectState(t, status, svc.Running)
	reqs <- svc.ChangeRequest{Cmd: svc.Shutdown}
	first := expectState(t, status, svc.StopPending)
	reqs <- svc.ChangeRequest{Cmd: svc.Interrogate}
	expectState(t, status, svc.StopPending)
	reqs <- svc.ChangeRequest{Cmd: svc.Stop} // a second stop is harmless
	next := expectState(t, status, svc.StopPending)
	if next.CheckPoint <= first.CheckPoint {
		t.Errorf("checkpoint %d then %d, want progress", first.CheckPoint, next.CheckPoint)
	}
	close(release)
	select {
	case r := <-result:
		if r != [2]uint32{0, 0} {
			t.Errorf("Execute returned %v, want a clean stop", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Execute did not return")
	}
}

// A run function that ends by itself (exit 64 after a self-update) stops
// the service with its code, without a stop request.
func TestServiceRunFunctionExits(t *testing.T) {
	h := &handler{fn: func(context.Context) int { return 64 }}
	_, status, result := execute(t, h)
	expectState(t, status, svc.StartPending)
	// Running may or may not be reported before the exit is noticed.
	select {
	case <-status:
	case <-time.After(10 * time.Second):
	}
	select {
	case r := <-result:
		if r != [2]uint32{1, 64} {
			t.Errorf("Execute returned %v, want service-specific exit code 64", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Execute did not return")
	}
}
