package agent

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/kanade-project/kanade/internal/ledger"
	"github.com/kanade-project/kanade/internal/retry"
	"github.com/kanade-project/kanade/internal/wire"
)

// onCommand is the live subscription handler.
func (a *Agent) onCommand(m *nats.Msg) { a.intake(m.Subject, m.Header, m.Data, "live") }

// intake checks, decodes, validates and admits one command, then hands it
// to its own goroutine: the subscription never blocks on a running script.
// Live and replayed commands take exactly the same path: addressed to this
// agent?, signature (on the raw bytes, before any parsing), decode, admit.
func (a *Agent) intake(subject string, h nats.Header, body []byte, source string) {
	select {
	case <-a.stopped:
		return // not admitted: a replay at the next start will offer it again
	default:
	}
	if !a.addressedToMe(subject) {
		// A group left a moment ago, or a subject this agent never
		// listens to: not ours to answer.
		a.log.Debug("command not addressed to this agent dropped", "subject", subject, "source", source)
		return
	}
	checked, err := a.verify.check(subject, h, body)
	if err != nil {
		a.refuse(subject, body, source, err)
		return
	}
	cmd, err := wire.DecodeCommand(body)
	if err != nil {
		a.reject(subject, body, source, err)
		return
	}
	verdict, entry, err := a.ledger.Admit(cmd.RequestID, cmd.ExecID, body, nuid.Next())
	if err != nil {
		// Without a durable admission record the agent cannot promise
		// at-most-once; it does not run the command. A replay after the
		// disk recovers will offer it again.
		a.log.Error("cannot record admission; command not run", "subject", subject, "request_id", cmd.RequestID, "err", err)
		return
	}
	switch verdict {
	case ledger.Duplicate:
		a.log.Debug("duplicate command ignored", "request_id", cmd.RequestID, "state", entry.State, "source", source)
		return
	case ledger.Conflict:
		a.log.Warn("security: a different command reuses a known request_id; refused",
			"security", true, "subject", subject, "request_id", cmd.RequestID, "known_sha256", entry.BodySHA256, "source", source)
		a.queueObs("command_conflict", "conflict-"+cmd.RequestID+"-"+ledger.BodyHash(body)[:16],
			map[string]string{"request_id": cmd.RequestID, "subject": subject})
		return
	}
	if checked {
		a.verify.record(subject, nil)
	}
	a.log.Info("command admitted", "request_id", cmd.RequestID, "exec_id", cmd.ExecID, "job", cmd.ID, "source", source)
	a.runs.Add(1)
	go func() {
		defer a.runs.Done()
		a.execute(cmd, entry.ResultID)
	}()
}

// addressedToMe reports whether subject is one of the agent's command
// subjects now: commands.all, commands.pc.<me>, or commands.group.<g> of a
// group it is a member of.
func (a *Agent) addressedToMe(subject string) bool {
	if subject == wire.SubjectCommandsAll || subject == wire.SubjectCommandsPC(a.cfg.ID) {
		return true
	}
	g, ok := strings.CutPrefix(subject, wire.SubjectCommandsGroup(""))
	return ok && slices.Contains(a.gsubs.groups(), g)
}

// reject answers a command that cannot be run, when it names a request_id
// to answer; it is admitted to the ledger so a replay does not answer twice.
func (a *Agent) reject(subject string, body []byte, source string, cause error) {
	a.log.Error("rejected command", "subject", subject, "source", source, "err", cause, "bytes", len(body))
	rid := wire.RecoverRequestID(body)
	if rid == "" {
		return
	}
	execID := wire.RecoverString(body, "exec_id", "job_id")
	verdict, entry, err := a.ledger.Admit(rid, execID, body, nuid.Next())
	if err != nil || verdict != ledger.New {
		return
	}
	if !wire.ValidToken(execID) {
		execID = rid
	}
	now := time.Now().UTC()
	a.finish(wire.ExecResult{
		ResultID:   entry.ResultID,
		RequestID:  rid,
		ExecID:     execID,
		PCID:       a.cfg.ID,
		ExitCode:   wire.ExitInvalidCommand,
		Skipped:    true,
		Stderr:     "[kanade] command rejected: " + cause.Error() + "\n",
		FinishedAt: now,
	})
}

// answerUnrunnable answers, after a restart, a command that was admitted
// only to be answered: a refusal marker gets exit 123 (refuse), anything
// else the invalid-command answer of reject. The ledger entry is marked
// done when the answer is delivered, like every result.
func (a *Agent) answerUnrunnable(e ledger.Entry, cause error) {
	res := wire.ExecResult{
		ResultID:   e.ResultID,
		RequestID:  e.RequestID,
		ExecID:     e.ExecID,
		PCID:       a.cfg.ID,
		FinishedAt: time.Now().UTC(),
	}
	if !wire.ValidToken(res.ExecID) {
		res.ExecID = e.RequestID
	}
	if isRefusalMarker(e.Command) {
		res.ExitCode = wire.ExitRefusedSignature
		res.Stderr = "[kanade] command refused (exit 123): its signature did not verify; the agent restarted before answering, so the exact reason is only in its log\n"
	} else {
		res.ExitCode, res.Skipped = wire.ExitInvalidCommand, true
		res.Stderr = "[kanade] command rejected: " + cause.Error() + "\n"
	}
	a.log.Warn("answering a command refused before the restart", "request_id", e.RequestID, "exit_code", res.ExitCode)
	a.finish(res)
}

// recover settles what the previous process left unfinished.
func (a *Agent) recover() {
	entries, err := a.ledger.Unfinished()
	if err != nil {
		a.log.Error("reading the admission ledger", "err", err)
		return
	}
	for _, e := range entries {
		switch e.State {
		case ledger.Launching:
			if a.outbox.Has(e.ResultID) {
				// The outcome was queued before the crash; the drain
				// marks it done once delivered.
				continue
			}
			a.log.Warn("a command was running when the agent stopped; reporting outcome unknown", "request_id", e.RequestID, "exec_id", e.ExecID)
			cmd, _ := wire.DecodeCommand(e.Command)
			now := time.Now().UTC()
			a.finish(wire.ExecResult{
				ResultID:   e.ResultID,
				RequestID:  e.RequestID,
				ExecID:     e.ExecID,
				JobID:      cmd.ID,
				Version:    cmd.Version,
				PCID:       a.cfg.ID,
				ExitCode:   wire.ExitOutcomeUnknown,
				Skipped:    true,
				Stderr:     "[kanade] outcome unknown: the agent stopped (crash, power loss or kill) while this command was running; it was not run again\n",
				FinishedAt: now,
			})
		case ledger.Admitted:
			// Admitted but never launched: running it now is its first
			// and only launch.
			cmd, err := wire.DecodeCommand(e.Command)
			if err != nil {
				// A rejected or refused command is admitted before its
				// answer is queued; a crash in between must not leave the
				// sender without one.
				if !a.outbox.Has(e.ResultID) {
					a.answerUnrunnable(e, err)
				}
				continue
			}
			a.log.Info("resuming a command admitted before the restart", "request_id", e.RequestID)
			a.runs.Add(1)
			go func() {
				defer a.runs.Done()
				a.execute(cmd, e.ResultID)
			}()
		}
	}
}

// replayer runs, after each (re)connection, the newest command on each of
// the agent's own subjects from stream EXEC. It reads them with direct
// last-by-subject gets: no consumer, so no per-agent state on the server
// (a durable consumer per agent hits the server's 1,000-consumer default
// and makes a reconnect storm of 10,000 agents create 10,000 consumers).
// The admission ledger turns everything already seen into a no-op.
type replayer struct {
	a *Agent

	mu     sync.Mutex
	handle jetstream.Stream
}

// stream returns the EXEC handle, acquiring it (forever, woken by
// reconnects) the first time.
func (r *replayer) stream(ctx context.Context) (jetstream.Stream, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.handle != nil {
		return r.handle, nil
	}
	a := r.a
	s, err := retry.Forever(ctx, a.cfg.Retry, a.log, "stream "+wire.StreamExec, a.link.Reconnected, func(ctx context.Context) (jetstream.Stream, error) {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return a.js.Stream(c, wire.StreamExec)
	})
	if err != nil {
		return nil, err
	}
	r.handle = s
	return s, nil
}

func newReplayer(a *Agent) *replayer { return &replayer{a: a} }

func (r *replayer) loop(ctx context.Context) {
	for {
		wake := r.a.link.Reconnected()
		if r.a.link.Connected() {
			r.replaySettled(ctx, wake)
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		}
	}
}

// replaySettled replays at once, retries a pass whose reads failed, and
// replays once more a few seconds after the first complete pass. The second
// pass closes a window found on a 3-node cluster (3 in 75 runs): a command
// published while the agent was re-registering its subscriptions on a new
// node reaches neither the subscription nor the first replay, because the
// other agents get it live before EXEC has stored it (or before the replica
// that answers the direct get has it). Without the second pass nothing
// would offer that command again until the next reconnect. The ledger makes
// the extra pass a no-op for everything already seen. It returns early on
// a new connection: that connection replays from the start.
func (r *replayer) replaySettled(ctx context.Context, wake <-chan struct{}) {
	complete, failures := 0, 0
	for {
		var d time.Duration
		if r.replay(ctx) {
			complete++
			if complete == 2 {
				return
			}
			// Jittered: after a broker restart 10,000 agents must not
			// come back for their second pass in the same instant.
			d = 5*time.Second + rand.N(5*time.Second)
		} else {
			failures++
			d = r.a.cfg.Retry.Delay(failures)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wake:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// replay offers the newest command on each of the agent's subjects; false
// when a read failed and the pass must be repeated.
func (r *replayer) replay(ctx context.Context) bool {
	a := r.a
	return r.replaySubjects(ctx, a.ownSubjects())
}

// replaySubjects offers the newest command on each subject to intake and
// reports whether every subject was read.
func (r *replayer) replaySubjects(ctx context.Context, subjects []string) bool {
	a := r.a
	if !a.link.Connected() {
		return false // the next connection replays everything
	}
	stream, err := r.stream(ctx)
	if err != nil {
		return false
	}
	ok := true
	for _, subj := range subjects {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		m, err := stream.GetLastMsgForSubject(c, subj)
		cancel()
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			continue
		case err != nil:
			a.log.Warn("replay: reading the newest command", "subject", subj, "err", err)
			ok = false
			continue
		}
		a.intake(m.Subject, m.Header, m.Data, "replay")
	}
	return ok
}
