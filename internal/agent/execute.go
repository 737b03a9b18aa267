package agent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-project/kanade/internal/ledger"
	"github.com/kanade-project/kanade/internal/runner"
	"github.com/kanade-project/kanade/internal/wire"
)

// errKilled is the cause of a kill.<exec_id>.
var errKilled = errors.New("killed by operator (kill." + "<exec_id>)")

// execute runs one admitted command to its single outcome:
//
//	kill latch → deadline → jitter → slot → gates → launch (with retries)
//
// The kill latch is armed first and covers every later step, so a kill
// sent at any point — during jitter, while waiting for a slot, mid-run or
// between retries — ends the execution with exit -1 and is never retried.
func (a *Agent) execute(c wire.Command, resultID string) {
	log := a.log.With("request_id", c.RequestID, "exec_id", c.ExecID, "job", c.ID)
	res := wire.ExecResult{
		ResultID:  resultID,
		RequestID: c.RequestID,
		ExecID:    c.ExecID,
		JobID:     c.ID,
		Version:   c.Version,
		PCID:      a.cfg.ID,
	}
	ctx, cancel := context.WithCancelCause(a.runCtx)
	defer cancel(nil)
	// The agent's kill.* subscription exists before any command could
	// arrive (see subscribe), so arming is local: from here on a kill of
	// this exec_id cancels ctx, and one that was dispatched a moment
	// before (while the command was being admitted) is caught up at once.
	disarm := a.kills.arm(c.ExecID, cancel)
	defer disarm()
	log.Debug("kill armed")

	skip := func(code int, reason string) {
		now := time.Now().UTC()
		res.ExitCode, res.Skipped, res.Stderr = code, true, "[kanade] "+reason+"\n"
		res.FinishedAt = now
		log.Info("command skipped", "exit_code", code, "reason", reason)
		a.finish(res)
	}
	killed := func(stage string) {
		res.ExitCode = wire.ExitKilled
		res.Stderr = fmt.Sprintf("[kanade] %s %s\n", reasonOf(ctx), stage)
		res.FinishedAt = time.Now().UTC()
		log.Info("command killed", "stage", stage)
		a.finish(res)
	}

	if c.DeadlineAt != nil && time.Now().After(*c.DeadlineAt) {
		skip(wire.ExitDeadlinePassed, fmt.Sprintf("start deadline %s passed before the command could start", c.DeadlineAt.UTC().Format(time.RFC3339)))
		return
	}
	if c.JitterSecs > 0 {
		if !sleepCtx(ctx, rand.N(time.Duration(c.JitterSecs)*time.Second)) {
			killed("during the jitter wait")
			return
		}
	}
	if err := a.slots.acquire(ctx); err != nil {
		killed("while waiting for a run slot")
		return
	}
	held := true
	defer func() {
		if held {
			a.slots.release()
		}
	}()

	// Gates are evaluated as late as possible: a revocation or pin change
	// made while the command waited still stops it.
	if code, reason, ok := a.checkGates(ctx, c); !ok {
		skip(code, reason)
		return
	}

	if err := a.ledger.Mark(c.RequestID, ledger.Launching); err != nil {
		// Without the launching mark a crash could lead to a second launch.
		skip(wire.ExitSpawnFailed, "cannot record the launch in the admission ledger: "+err.Error())
		return
	}
	a.queueStarted(c, resultID)

	attempts := 1
	if c.Retry != nil {
		attempts += c.Retry.Max
	}
	spec := runner.Spec{
		Shell:   c.Shell,
		Script:  c.Script,
		Timeout: time.Duration(c.TimeoutSecs) * time.Second,
		Dir:     c.Cwd,
	}
	var history []string
	for n := 1; ; n++ {
		log.Info("running command", "shell", spec.Shell, "timeout", spec.Timeout, "attempt", n)
		out, err := a.cfg.Exec(ctx, spec)
		if err != nil {
			now := time.Now().UTC()
			res.ExitCode, res.Skipped, res.TimedOut = wire.ExitSpawnFailed, true, false
			res.Stderr = "[kanade] " + err.Error() + "\n"
			res.StartedAt, res.FinishedAt = now, now
			log.Warn("command could not start", "err", err)
			break
		}
		res.ExitCode, res.TimedOut = out.ExitCode, out.TimedOut
		res.Stdout, res.Stderr = out.Stdout, out.Stderr
		res.StartedAt, res.FinishedAt = out.StartedAt, out.FinishedAt
		res.Attempts = n
		log.Info("command finished", "exit_code", out.ExitCode, "duration", out.FinishedAt.Sub(out.StartedAt), "timed_out", out.TimedOut, "killed", out.Killed)
		if out.ExitCode == 0 || out.Killed || n >= attempts {
			break
		}
		what := fmt.Sprintf("exit %d", out.ExitCode)
		if out.TimedOut {
			what = "timed out"
		}
		history = append(history, fmt.Sprintf("attempt %d: %s", n, what))
		// The slot goes back while waiting: a retry backoff must not
		// block other commands.
		a.slots.release()
		held = false
		backoff := time.Duration(c.Retry.BackoffSecs) * time.Second
		if !sleepCtx(ctx, backoff) {
			// Killed now, whatever the attempt before did (it may
			// have timed out).
			res.ExitCode, res.TimedOut = wire.ExitKilled, false
			res.Stderr += fmt.Sprintf("[kanade] %s during the retry backoff after attempt %d\n", reasonOf(ctx), n)
			res.FinishedAt = time.Now().UTC()
			break
		}
		if err := a.slots.acquire(ctx); err != nil {
			res.ExitCode, res.TimedOut = wire.ExitKilled, false
			res.Stderr += fmt.Sprintf("[kanade] %s while waiting for a run slot for attempt %d\n", reasonOf(ctx), n+1)
			res.FinishedAt = time.Now().UTC()
			break
		}
		held = true
	}
	if len(history) > 0 {
		res.Stderr += fmt.Sprintf("[kanade] attempt %d of %d; earlier: %s\n", res.Attempts, attempts, strings.Join(history, ", "))
	}
	a.finish(res)
}

// onKill is the handler of the agent's one kill.* subscription.
func (a *Agent) onKill(m *nats.Msg) {
	execID, ok := strings.CutPrefix(m.Subject, wire.SubjectKill(""))
	if !ok || !wire.ValidToken(execID) {
		return
	}
	n := a.kills.kill(execID)
	a.log.Debug("kill received", "exec_id", execID, "runs", n)
}

// Recent kills are remembered for this long, and at most this many, so
// that a run armed just after its kill was dispatched is still killed.
// nats.go delivers each subscription's messages on its own goroutine: a
// kill published right after a command can be handled before that
// command's run is armed (admission writes a file first). A minute covers
// that gap with a wide margin; the count bounds the memory, since every
// agent receives every kill of the fleet.
const (
	recentKillTTL = time.Minute
	recentKillMax = 256
)

// killSwitch dispatches kills from the agent's single kill.* subscription
// to the executions armed here, by exec_id. Its methods are safe for
// concurrent use.
type killSwitch struct {
	now func() time.Time

	mu sync.Mutex
	// armed holds the runs of each exec_id (a PC can run several requests
	// of one execution, e.g. in two waves).
	armed map[string]map[*armedRun]struct{}
	// recent is when each exec_id was last killed; order holds its keys
	// by that time, oldest first, for the expiry and the count bound.
	recent map[string]time.Time
	order  []string
}

type armedRun struct{ cancel context.CancelCauseFunc }

func newKillSwitch() *killSwitch {
	return &killSwitch{
		now:    time.Now,
		armed:  map[string]map[*armedRun]struct{}{},
		recent: map[string]time.Time{},
	}
}

// arm makes a kill of execID call cancel(errKilled) until the returned
// disarm is called. A kill received less than recentKillTTL before arm
// cancels at once.
func (k *killSwitch) arm(execID string, cancel context.CancelCauseFunc) (disarm func()) {
	r := &armedRun{cancel: cancel}
	k.mu.Lock()
	defer k.mu.Unlock()
	runs := k.armed[execID]
	if runs == nil {
		runs = map[*armedRun]struct{}{}
		k.armed[execID] = runs
	}
	runs[r] = struct{}{}
	k.expireLocked()
	if _, ok := k.recent[execID]; ok {
		cancel(errKilled)
	}
	return func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		delete(runs, r)
		// runs is still k.armed[execID]: a set leaves the map only
		// once empty, and it held r until now.
		if len(runs) == 0 {
			delete(k.armed, execID)
		}
	}
}

// kill cancels every run armed for execID, remembers the kill for runs
// armed soon after, and returns how many runs it cancelled.
func (k *killSwitch) kill(execID string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	for r := range k.armed[execID] {
		r.cancel(errKilled)
	}
	if _, ok := k.recent[execID]; ok {
		k.order = slices.DeleteFunc(k.order, func(id string) bool { return id == execID })
	}
	k.recent[execID] = k.now()
	k.order = append(k.order, execID)
	if len(k.order) > recentKillMax {
		delete(k.recent, k.order[0])
		k.order = slices.Delete(k.order, 0, 1)
	}
	k.expireLocked()
	return len(k.armed[execID])
}

// expireLocked forgets the kills older than recentKillTTL.
func (k *killSwitch) expireLocked() {
	cut := k.now().Add(-recentKillTTL)
	n := 0
	for n < len(k.order) && !k.recent[k.order[n]].After(cut) {
		delete(k.recent, k.order[n])
		n++
	}
	if n > 0 {
		k.order = slices.Delete(k.order, 0, n)
	}
}

func reasonOf(ctx context.Context) string {
	c := context.Cause(ctx)
	switch {
	case errors.Is(c, errKilled):
		return "killed by operator"
	case c != nil && !errors.Is(c, context.Canceled):
		return "killed: " + c.Error()
	}
	return "killed"
}

// sleepCtx sleeps d or until ctx ends; it reports whether the full sleep
// happened.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
