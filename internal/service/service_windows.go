package service

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/windows/svc"
)

// Run runs fn as the Windows service Name when the Service Control Manager
// started the process, and in console mode otherwise, where Ctrl-C,
// Ctrl-Break or closing the console window cancels fn's context.
func Run(fn RunFunc) int {
	isService, err := svc.IsWindowsService()
	if err != nil {
		// Console mode still lets an operator run and stop the agent; a
		// service that ends up here is stopped by the SCM's timeout.
		fmt.Fprintf(os.Stderr, "kanade: cannot tell whether the service manager started this process (%v); running in console mode\n", err)
	}
	if err == nil && isService {
		h := &handler{fn: fn}
		if err := svc.Run(Name, h); err != nil {
			fmt.Fprintf(os.Stderr, "kanade: running as service %s: %v\n", Name, err)
			return 1
		}
		return h.code
	}
	// Go delivers Ctrl-C and Ctrl-Break as os.Interrupt and a closed
	// console window, logoff or shutdown as SIGTERM.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return fn(ctx)
}

// stopWaitHint is how long the SCM is told to wait between progress
// reports while the agent stops (it finishes or abandons the running
// scripts and flushes its outbox); the report is renewed every
// stopProgress, so a slow but live shutdown is never mistaken for a hang.
const (
	stopWaitHint = 10 * time.Second
	stopProgress = 2 * time.Second
)

// handler adapts a RunFunc to svc.Handler.
type handler struct {
	fn RunFunc
	// code is what fn returned, for the process exit code once svc.Run
	// returns.
	code int
}

// Execute reports StartPending then Running, cancels fn's context on Stop
// or Shutdown (reporting StopPending with progress until fn returns), and
// returns fn's exit code as the service-specific exit code. svc.Run then
// reports Stopped with it: a non-zero code (64 after a self-update) makes
// the SCM run the service's recovery actions, which restart it.
func (h *handler) Execute(_ []string, reqs <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- h.fn(ctx) }()

	current := svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	status <- current
	var progress <-chan time.Time
	for {
		select {
		case code := <-done:
			h.code = code
			if code == 0 {
				return false, 0
			}
			return true, uint32(code)
		case r := <-reqs:
			switch r.Cmd {
			case svc.Interrogate:
				status <- current
			case svc.Stop, svc.Shutdown:
				if current.State == svc.StopPending {
					continue // already stopping
				}
				current = svc.Status{State: svc.StopPending, CheckPoint: 1, WaitHint: uint32(stopWaitHint / time.Millisecond)}
				status <- current
				cancel()
				t := time.NewTicker(stopProgress)
				defer t.Stop()
				progress = t.C
			}
			// Other controls are not accepted, so the SCM does not send
			// them; ignoring them is the documented answer anyway.
		case <-progress:
			current.CheckPoint++
			status <- current
		}
	}
}
