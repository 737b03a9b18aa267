package jobs_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/jobs"
	"github.com/kanade-project/kanade/internal/wire"
)

func TestStartPinsScriptCurrentBeforeTheFirstPublish(t *testing.T) {
	v := newEnv(t)
	ctx := testCtx(t)
	pins := v.kv(wire.BucketScriptCurrent)
	if _, err := pins.Put(ctx, "patch", []byte("1")); err != nil {
		t.Fatal(err)
	}
	// One connection, one channel: the broker delivers the pin's KV write
	// and the command in the order it processed them.
	c := v.capture("$KV."+wire.BucketScriptCurrent+".patch", wire.SubjectCommandsWild)
	ex := v.executor(nil)

	x, err := ex.Start(ctx, manifest(t, "patch", "2"), plan(t, `target: {pcs: [pc-1]}`))
	if err != nil {
		t.Fatal(err)
	}
	first := c.next()
	if first.Subject != "$KV."+wire.BucketScriptCurrent+".patch" || string(first.Data) != "2" {
		t.Fatalf("first message: %s %q, want the pin to version 2", first.Subject, first.Data)
	}
	subj, cmd := c.nextCommand()
	// And at receipt of the command, the KV value is the new version.
	pin, err := pins.Get(ctx, "patch")
	if err != nil {
		t.Fatal(err)
	}
	if string(pin.Value()) != "2" {
		t.Fatalf("script_current/patch = %q at receipt of the command, want 2", pin.Value())
	}
	if subj != "commands.pc.pc-1" || cmd.ID != "patch" || cmd.Version != "2" || cmd.ExecID != x.ExecID || cmd.RequestID == "" {
		t.Fatalf("command %s %+v (exec %s)", subj, cmd, x.ExecID)
	}
	if x.Waves[0].State != jobs.WavePublished {
		t.Fatalf("wave state %s", x.Waves[0].State)
	}
}

func TestStartWithoutWavesPublishesEveryTargetWithFreshRequestIDs(t *testing.T) {
	v := newEnv(t)
	ctx := testCtx(t)
	c := v.capture(wire.SubjectCommandsWild)
	ex := v.executor(nil)
	x, err := ex.Start(ctx, manifest(t, "inv", "1"), plan(t, `
target: {groups: [site-a, site-b], pcs: [pc-9]}
jitter: 30s
deadline: 1h
`))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for range 3 {
		subj, cmd := c.nextCommand()
		if cmd.ExecID != x.ExecID {
			t.Fatalf("%s: exec_id %s, want %s", subj, cmd.ExecID, x.ExecID)
		}
		if cmd.JitterSecs != 30 || cmd.DeadlineAt == nil || !cmd.DeadlineAt.Equal(t0.Add(time.Hour)) {
			t.Fatalf("%s: jitter %d deadline %v", subj, cmd.JitterSecs, cmd.DeadlineAt)
		}
		if prev, dup := seen[cmd.RequestID]; dup {
			t.Fatalf("request_id %s used by %s and %s", cmd.RequestID, prev, subj)
		}
		seen[cmd.RequestID] = subj
	}
	c.none()
	got := map[string]bool{}
	for _, s := range seen {
		got[s] = true
	}
	for _, s := range []string{"commands.group.site-a", "commands.group.site-b", "commands.pc.pc-9"} {
		if !got[s] {
			t.Errorf("nothing published on %s (got %v)", s, seen)
		}
	}
	pubs := x.Publications()
	if len(pubs) != 3 || !pubs[0].Published || seen[pubs[2].RequestID] != pubs[2].Subject {
		t.Fatalf("Publications() = %+v", pubs)
	}
}

const twoWaves = `
rollout:
  waves:
    - group: canary
    - group: wave1
      delay: 10m
  stop_if_failed_pct: 50
deadline: 1h
`

func TestSecondWaveIsHeldUntilItsDelayThenPublishedWithTheSameExecID(t *testing.T) {
	v := newEnv(t)
	ctx := testCtx(t)
	c := v.capture(wire.SubjectCommandsWild)
	ex := v.executor(nil)
	v.run(ex)

	x, err := ex.Start(ctx, manifest(t, "patch", "1"), plan(t, twoWaves))
	if err != nil {
		t.Fatal(err)
	}
	subj, first := c.nextCommand()
	if subj != "commands.group.canary" || first.ExecID != x.ExecID {
		t.Fatalf("first publish %s exec %s", subj, first.ExecID)
	}
	due := t0.Add(10 * time.Minute)
	// The loop sleeps until exactly the second wave's due time...
	if err := v.clk.WaitForTimerAt(ctx, due); err != nil {
		t.Fatal(err)
	}
	c.none()
	// ...one second before it, nothing happens...
	v.clk.Advance(10*time.Minute - time.Second)
	c.none()
	if stored, _ := ex.Get(ctx, x.ExecID); stored.Waves[1].State != jobs.WavePending {
		t.Fatalf("wave 1 is %s before its due time", stored.Waves[1].State)
	}
	// ...and at the due time the second wave goes out.
	v.clk.Advance(time.Second)
	subj, second := c.nextCommand()
	if subj != "commands.group.wave1" {
		t.Fatalf("second publish on %s", subj)
	}
	if second.ExecID != first.ExecID {
		t.Fatalf("exec_id changed between waves: %s then %s", first.ExecID, second.ExecID)
	}
	if second.RequestID == first.RequestID {
		t.Fatal("both waves share a request_id")
	}
	// Each wave's deadline counts from its own publication.
	if !first.DeadlineAt.Equal(t0.Add(time.Hour)) || !second.DeadlineAt.Equal(due.Add(time.Hour)) {
		t.Fatalf("deadlines %v and %v", first.DeadlineAt, second.DeadlineAt)
	}
	final := v.waitExec(x.ExecID, func(x jobs.Execution) bool { return x.Waves[1].State == jobs.WavePublished })
	if !final.Waves[1].PublishedAt.Equal(due) {
		t.Fatalf("wave 1 published at %v, due %v", final.Waves[1].PublishedAt, due)
	}
	c.none()
}

func TestFailureRateOfFirstWaveDecidesTheSecond(t *testing.T) {
	for _, tc := range []struct {
		name  string
		exits []int
		want  string
	}{
		{"all failed: stopped", []int{1, 2}, jobs.WaveStopped},
		{"half failed at 50%: published", []int{0, 1}, jobs.WavePublished},
		{"all succeeded: published", []int{0, 0}, jobs.WavePublished},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t)
			ctx := testCtx(t)
			c := v.capture(wire.SubjectCommandsWild)
			ex := v.executor(resultsStream{v.js})
			v.run(ex)

			x, err := ex.Start(ctx, manifest(t, "patch", "1"), plan(t, twoWaves))
			if err != nil {
				t.Fatal(err)
			}
			_, canary := c.nextCommand()
			for i, exit := range tc.exits {
				v.publishResult(canary, "pc-"+string(rune('a'+i)), exit)
			}
			if err := v.clk.WaitForTimerAt(ctx, t0.Add(10*time.Minute)); err != nil {
				t.Fatal(err)
			}
			v.clk.Advance(10 * time.Minute)
			final := v.waitExec(x.ExecID, func(x jobs.Execution) bool { return x.Waves[1].Done() })
			if final.Waves[1].State != tc.want {
				t.Fatalf("wave 1 is %s (%s), want %s", final.Waves[1].State, final.Waves[1].Reason, tc.want)
			}
			exec, err := v.js.Stream(ctx, wire.StreamExec)
			if err != nil {
				t.Fatal(err)
			}
			_, err = exec.GetLastMsgForSubject(ctx, "commands.group.wave1")
			if tc.want == jobs.WaveStopped {
				if !strings.Contains(final.Waves[1].Reason, "2 of 2 results so far failed (100.0%), more than stop_if_failed_pct 50%") {
					t.Fatalf("reason %q", final.Waves[1].Reason)
				}
				if !errors.Is(err, jetstream.ErrMsgNotFound) {
					t.Fatalf("EXEC holds a command for the stopped wave (err %v)", err)
				}
				c.none()
				return
			}
			if err != nil {
				t.Fatalf("EXEC has no command for the published wave: %v", err)
			}
			subj, cmd := c.nextCommand()
			if subj != "commands.group.wave1" || cmd.ExecID != x.ExecID {
				t.Fatalf("got %s exec %s", subj, cmd.ExecID)
			}
		})
	}
}

// failingCounter reports 100 % failed, or an error.
type failingCounter struct{ err error }

func (f failingCounter) Counts(context.Context, string) (int, int, error) { return 4, 4, f.err }

func TestCounterErrorHoldsTheWave(t *testing.T) {
	v := newEnv(t)
	ctx := testCtx(t)
	c := v.capture(wire.SubjectCommandsWild)
	ex := v.executor(failingCounter{err: errors.New("sqlite is locked")})
	ex.RetryDelay = time.Minute
	v.run(ex)
	x, err := ex.Start(ctx, manifest(t, "patch", "1"), plan(t, twoWaves))
	if err != nil {
		t.Fatal(err)
	}
	c.next()
	if err := v.clk.WaitForTimerAt(ctx, t0.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	v.clk.Advance(10 * time.Minute)
	// The count failed: the wave is neither published nor stopped, and
	// the loop retries after RetryDelay.
	if err := v.clk.WaitForTimerAt(ctx, t0.Add(11*time.Minute)); err != nil {
		t.Fatal(err)
	}
	c.none()
	if stored, _ := ex.Get(ctx, x.ExecID); stored.Waves[1].State != jobs.WavePending {
		t.Fatalf("wave 1 is %s after a failed count", stored.Waves[1].State)
	}
}

func TestPendingWavesSurviveAnExecutorRestart(t *testing.T) {
	v := newEnv(t)
	ctx := testCtx(t)
	c := v.capture(wire.SubjectCommandsWild)
	ex1 := v.executor(nil)
	stop1 := v.run(ex1)
	x, err := ex1.Start(ctx, manifest(t, "patch", "1"), plan(t, `
rollout:
  waves:
    - {group: canary}
    - {group: wave1, delay: 10m}
    - {group: wave2, delay: 10m}
`))
	if err != nil {
		t.Fatal(err)
	}
	c.next()
	if err := v.clk.WaitForTimerAt(ctx, t0.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	stop1() // the server goes down with two waves pending

	v.clk.Advance(15 * time.Minute) // wave1 is now overdue; nobody runs
	c.none()

	ex2 := v.executor(nil) // a new process: new executor id, nothing in memory
	if ex2.ID() == ex1.ID() {
		t.Fatal("executors share an id")
	}
	v.run(ex2)
	subj, cmd := c.nextCommand()
	if subj != "commands.group.wave1" || cmd.ExecID != x.ExecID {
		t.Fatalf("after restart: %s exec %s", subj, cmd.ExecID)
	}
	if err := v.clk.WaitForTimerAt(ctx, t0.Add(20*time.Minute)); err != nil {
		t.Fatal(err)
	}
	c.none()
	v.clk.Advance(5 * time.Minute)
	subj, cmd = c.nextCommand()
	if subj != "commands.group.wave2" || cmd.ExecID != x.ExecID {
		t.Fatalf("third wave: %s exec %s", subj, cmd.ExecID)
	}
	final := v.waitExec(x.ExecID, func(x jobs.Execution) bool { return x.Waves[2].State == jobs.WavePublished })
	for i, w := range final.Waves {
		if w.State != jobs.WavePublished || w.Published != 1 {
			t.Fatalf("wave %d: %+v", i, w)
		}
	}
	// Exactly once: a third executor loads the finished record and
	// publishes nothing more for it. Its loop reads exec_plans in order,
	// so once it is asleep until a newer execution's second wave, it has
	// considered the old record.
	ex3 := v.executor(nil)
	v.run(ex3)
	y, err := ex3.Start(ctx, manifest(t, "other", "1"), plan(t, twoWaves))
	if err != nil {
		t.Fatal(err)
	}
	if _, cmd := c.nextCommand(); cmd.ExecID != y.ExecID {
		t.Fatalf("got exec %s, want %s", cmd.ExecID, y.ExecID)
	}
	yDue := v.clk.Now().Add(10 * time.Minute)
	// ex2 and ex3 are both asleep until it.
	if err := v.clk.WaitForTimerAt(ctx, yDue, 2); err != nil {
		t.Fatal(err)
	}
	v.clk.Set(yDue.Add(time.Hour))
	if subj, cmd := c.nextCommand(); cmd.ExecID != y.ExecID || subj != "commands.group.wave1" {
		t.Fatalf("got %s exec %s, want only the new execution's second wave", subj, cmd.ExecID)
	}
	v.waitExec(y.ExecID, func(x jobs.Execution) bool { return x.Waves[1].State == jobs.WavePublished })
	c.none()
}

func TestTwoRunningExecutorsPublishAWaveOnce(t *testing.T) {
	v := newEnv(t)
	ctx := testCtx(t)
	c := v.capture(wire.SubjectCommandsWild)
	a, b := v.executor(nil), v.executor(nil)
	v.run(a)
	v.run(b)
	x, err := a.Start(ctx, manifest(t, "patch", "1"), plan(t, twoWaves))
	if err != nil {
		t.Fatal(err)
	}
	c.next()
	due := t0.Add(10 * time.Minute)
	// Both loops are asleep until the due time.
	if err := v.clk.WaitForTimerAt(ctx, due, 2); err != nil {
		t.Fatal(err)
	}
	v.clk.Advance(10 * time.Minute)
	subj, _ := c.nextCommand()
	if subj != "commands.group.wave1" {
		t.Fatalf("got %s", subj)
	}
	v.waitExec(x.ExecID, func(x jobs.Execution) bool { return x.Waves[1].State == jobs.WavePublished })
	c.none()
}

func TestStartWithAnExistingExecIDPublishesNothing(t *testing.T) {
	v := newEnv(t)
	ctx := testCtx(t)
	c := v.capture(wire.SubjectCommandsWild)
	ex := v.executor(nil)
	p := plan(t, "exec_id: nightly-2026-03-02\ntarget: {all: true}\n")
	if _, err := ex.Start(ctx, manifest(t, "patch", "1"), p); err != nil {
		t.Fatal(err)
	}
	_, cmd := c.nextCommand()
	if cmd.ExecID != "nightly-2026-03-02" {
		t.Fatalf("exec_id %s", cmd.ExecID)
	}
	if _, err := ex.Start(ctx, manifest(t, "patch", "1"), p); !errors.Is(err, jobs.ErrExecExists) {
		t.Fatalf("second Start: %v, want ErrExecExists", err)
	}
	c.none()
}

func TestKillPublishesKillAndCancelsPendingWaves(t *testing.T) {
	v := newEnv(t)
	ctx := testCtx(t)
	c := v.capture(wire.SubjectCommandsWild, "kill.>")
	ex := v.executor(nil)
	v.run(ex)
	x, err := ex.Start(ctx, manifest(t, "patch", "1"), plan(t, twoWaves))
	if err != nil {
		t.Fatal(err)
	}
	c.next()
	if err := ex.Kill(ctx, x.ExecID); err != nil {
		t.Fatal(err)
	}
	if m := c.next(); m.Subject != wire.SubjectKill(x.ExecID) {
		t.Fatalf("got %s, want the kill", m.Subject)
	}
	final := v.waitExec(x.ExecID, func(x jobs.Execution) bool { return x.Waves[1].State == jobs.WaveCancelled })
	if final.Waves[1].Reason != "killed" {
		t.Fatalf("reason %q", final.Waves[1].Reason)
	}
	v.clk.Advance(time.Hour)
	c.none()
}

func TestStartRecordsAFailedFirstPublish(t *testing.T) {
	v := newEnv(t)
	ctx := testCtx(t)
	ex := v.executor(nil)
	// Without the EXEC stream, nothing captures commands: publish fails.
	if err := v.js.DeleteStream(ctx, wire.StreamExec); err != nil {
		t.Fatal(err)
	}
	x, err := ex.Start(ctx, manifest(t, "patch", "1"), plan(t, twoWaves))
	if err == nil || !strings.Contains(err.Error(), "no JetStream stream captures it") {
		t.Fatalf("Start: %v", err)
	}
	if x.Waves[0].State != jobs.WaveFailed || x.Waves[1].State != jobs.WaveCancelled {
		t.Fatalf("waves %+v", x.Waves)
	}
	stored, err := ex.Get(ctx, x.ExecID)
	if err != nil || stored.Waves[0].State != jobs.WaveFailed {
		t.Fatalf("stored %+v %v", stored.Waves, err)
	}
}

func TestRevokeAndUnrevokeWriteScriptStatus(t *testing.T) {
	v := newEnv(t)
	ctx := testCtx(t)
	ex := v.executor(nil)
	status := v.kv(wire.BucketScriptStatus)
	if err := ex.Revoke(ctx, "patch"); err != nil {
		t.Fatal(err)
	}
	if e, err := status.Get(ctx, "patch"); err != nil || string(e.Value()) != wire.ScriptRevoked {
		t.Fatalf("after Revoke: %v %v", e, err)
	}
	if err := ex.Unrevoke(ctx, "patch"); err != nil {
		t.Fatal(err)
	}
	if e, err := status.Get(ctx, "patch"); err != nil || string(e.Value()) != wire.ScriptActive {
		t.Fatalf("after Unrevoke: %v %v", e, err)
	}
	if err := ex.Revoke(ctx, "a.b"); err == nil {
		t.Fatal("Revoke accepted an invalid job id")
	}
}
