package agent

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// fakeClock is a settable time source for killSwitch.now.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// armed arms execID on k and returns the run's context and its disarm.
func armed(k *killSwitch, execID string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	return ctx, k.arm(execID, cancel)
}

func killedByOperator(ctx context.Context) bool {
	return ctx.Err() != nil && errors.Is(context.Cause(ctx), errKilled)
}

func TestKillSwitchRoutesByExecID(t *testing.T) {
	k := newKillSwitch()
	a1, disarmA1 := armed(k, "exec-a")
	a2, disarmA2 := armed(k, "exec-a") // another request of the same execution
	b, disarmB := armed(k, "exec-b")
	defer disarmA1()
	defer disarmA2()
	defer disarmB()

	// Neither a never-seen exec_id nor one sharing a prefix touches a run.
	for _, other := range []string{"exec-c", "exec-", "exec-ab"} {
		if n := k.kill(other); n != 0 {
			t.Errorf("kill(%s) cancelled %d runs, want 0", other, n)
		}
	}
	if a1.Err() != nil || a2.Err() != nil || b.Err() != nil {
		t.Fatal("a kill of another exec_id cancelled a run")
	}
	if n := k.kill("exec-a"); n != 2 {
		t.Errorf("kill(exec-a) cancelled %d runs, want 2", n)
	}
	if !killedByOperator(a1) || !killedByOperator(a2) {
		t.Errorf("runs of exec-a: causes %v, %v; want errKilled", context.Cause(a1), context.Cause(a2))
	}
	if b.Err() != nil {
		t.Errorf("run of exec-b cancelled by the kill of exec-a: %v", context.Cause(b))
	}
}

func TestKillSwitchDisarmForgetsTheRun(t *testing.T) {
	k := newKillSwitch()
	ctx, disarm := armed(k, "exec-a")
	disarm()
	if n := k.kill("exec-a"); n != 0 || ctx.Err() != nil {
		t.Errorf("kill after disarm cancelled %d runs (ctx %v), want none", n, ctx.Err())
	}
	if len(k.armed) != 0 {
		t.Errorf("armed = %v after the only run disarmed, want empty", k.armed)
	}
}

// A kill handled before its run is armed — the kill and command
// subscriptions are served by different goroutines, and admission writes a
// file first — still kills the run, within recentKillTTL.
func TestKillSwitchKillBeforeArm(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	k := newKillSwitch()
	k.now = clk.now

	k.kill("exec-early")
	clk.t = clk.t.Add(recentKillTTL - time.Second)
	ctx, disarm := armed(k, "exec-early")
	defer disarm()
	if !killedByOperator(ctx) {
		t.Fatalf("run armed %s after its kill: cause %v, want errKilled", recentKillTTL-time.Second, context.Cause(ctx))
	}

	k.kill("exec-stale")
	clk.t = clk.t.Add(recentKillTTL)
	ctx, disarm = armed(k, "exec-stale")
	defer disarm()
	if ctx.Err() != nil {
		t.Fatalf("run armed %s after its kill was cancelled: the kill should be forgotten", recentKillTTL)
	}
	if _, ok := k.recent["exec-stale"]; ok {
		t.Error("an expired kill is still remembered")
	}
}

// Every agent receives every kill of the fleet: the memory of kills for
// runs it does not have stays bounded, the oldest going first.
func TestKillSwitchRemembersBoundedKills(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	k := newKillSwitch()
	k.now = clk.now
	for i := range recentKillMax + 10 {
		clk.t = clk.t.Add(time.Millisecond)
		k.kill(fmt.Sprintf("exec-%d", i))
	}
	// Killed again: moves to the newest position instead of growing.
	k.kill("exec-20")
	if len(k.recent) != recentKillMax || len(k.order) != recentKillMax {
		t.Fatalf("remembering %d kills (order %d), want %d", len(k.recent), len(k.order), recentKillMax)
	}
	for _, id := range []string{"exec-0", "exec-9"} {
		if _, ok := k.recent[id]; ok {
			t.Errorf("%s, among the oldest, is still remembered", id)
		}
	}
	for _, id := range []string{"exec-10", "exec-20", fmt.Sprintf("exec-%d", recentKillMax+9)} {
		if _, ok := k.recent[id]; !ok {
			t.Errorf("%s was forgotten", id)
		}
	}
	if last := k.order[len(k.order)-1]; last != "exec-20" {
		t.Errorf("newest remembered kill = %s, want exec-20", last)
	}
}
