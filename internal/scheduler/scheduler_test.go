package scheduler_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/jobs"
	"github.com/kanade-project/kanade/internal/scheduler"
	"github.com/kanade-project/kanade/internal/wire"
)

const nightly = `id: nightly
job: patch
cron: "0 3 * * *"
timezone: Europe/Paris
target: {pcs: [pc-1]}
jitter: 1m
starting_deadline: 30m
`

func TestCronFiresAtTheRightMinute(t *testing.T) {
	v := newEnv(t)
	rev := v.putSchedule(nightly)
	a := v.newNode(nil).start(t)
	a.events.waitTick(t0, "nightly", rev)

	// 03:00 in Paris on 3 March 2026 is 02:00 UTC (CET).
	slot := time.Date(2026, 3, 3, 2, 0, 0, 0, time.UTC)
	v.clk.Set(slot.Add(-time.Minute))
	a.events.waitTick(slot.Add(-time.Minute), "nightly", rev)
	v.cmds.none()

	v.clk.Set(slot)
	fired := a.events.wait("fired", isKind(scheduler.EventFired, "nightly"))
	if !fired.Slot.Equal(slot) || !fired.At.Equal(slot) {
		t.Fatalf("fired for slot %s at %s, want %s", fired.Slot, fired.At, slot)
	}
	g := v.cmds.next()
	if g.subject != "commands.pc.pc-1" || g.cmd.ID != "patch" || g.cmd.Version != "4" || g.cmd.ExecID != fired.ExecID {
		t.Fatalf("command %s %+v", g.subject, g.cmd)
	}
	// starting_deadline → deadline_at, counted from the slot; jitter → jitter_secs.
	if g.cmd.DeadlineAt == nil || !g.cmd.DeadlineAt.Equal(slot.Add(30*time.Minute)) || g.cmd.JitterSecs != 60 {
		t.Fatalf("deadline_at %v jitter %d", g.cmd.DeadlineAt, g.cmd.JitterSecs)
	}
	// The next fire is the next day at 03:00 Paris, not before.
	v.clk.Set(slot.Add(23 * time.Hour))
	a.events.waitTick(slot.Add(23*time.Hour), "nightly", rev)
	v.cmds.none()
	v.clk.Set(slot.Add(24 * time.Hour))
	a.events.wait("second fire", func(e scheduler.Event) bool {
		return e.Kind == scheduler.EventFired && e.Slot.Equal(slot.Add(24*time.Hour))
	})
	if g := v.cmds.next(); g.cmd.ExecID == fired.ExecID {
		t.Fatal("two fires share an exec_id")
	}
}

func TestCronSlotIsNotRepeatedAfterARestart(t *testing.T) {
	v := newEnv(t)
	rev := v.putSchedule(nightly)
	a := v.newNode(nil).start(t)
	a.events.waitTick(t0, "nightly", rev)
	slot := time.Date(2026, 3, 3, 2, 0, 0, 0, time.UTC)
	v.clk.Set(slot)
	a.events.wait("fired", isKind(scheduler.EventFired, "nightly"))
	v.cmds.next()
	a.stop()

	// A new process, same time, later in the slot's minute.
	v.clk.Advance(20 * time.Second)
	b := v.newNode(nil).start(t)
	b.events.wait("leader", isKind(scheduler.EventLeader, ""))
	b.events.waitTick(v.clk.Now(), "nightly", rev)
	v.cmds.none()
	if n := len(b.events.all(isKind(scheduler.EventFired, ""))); n != 0 {
		t.Fatalf("the restarted scheduler fired %d times", n)
	}
}

func TestCronMissedSlotPastStartingDeadlineIsSkipped(t *testing.T) {
	v := newEnv(t)
	rev := v.putSchedule(nightly)
	a := v.newNode(nil).start(t)
	a.events.waitTick(t0, "nightly", rev)
	a.stop()
	// The server is down from before 03:00 Paris until 04:00, past the
	// 30 min starting deadline.
	v.clk.Set(time.Date(2026, 3, 3, 3, 0, 0, 0, time.UTC))
	b := v.newNode(nil).start(t)
	skipped := b.events.wait("skipped", isKind(scheduler.EventSkipped, "nightly"))
	if !skipped.Slot.Equal(time.Date(2026, 3, 3, 2, 0, 0, 0, time.UTC)) {
		t.Fatalf("skipped slot %s (%s)", skipped.Slot, skipped.Reason)
	}
	v.cmds.none()
}

func TestPerPCOnceFiresExactlyOncePerPCAcrossARestart(t *testing.T) {
	v := newEnv(t)
	v.fleet.set("pc-1", "pc-2", "pc-3")
	v.putSchedule("id: baseline\njob: patch\nper_pc: once\ntarget: {all: true}\n")
	a := v.newNode(nil).start(t)
	fired := a.events.wait("fired", isKind(scheduler.EventFired, "baseline"))
	if !slices.Equal(fired.PCs, []string{"pc-1", "pc-2", "pc-3"}) {
		t.Fatalf("fired for %v", fired.PCs)
	}
	first := v.cmds.take(3)
	if s := subjects(first); !slices.Equal(s, []string{"commands.pc.pc-1", "commands.pc.pc-2", "commands.pc.pc-3"}) {
		t.Fatalf("subjects %v", s)
	}
	for _, g := range first {
		if g.cmd.ExecID != fired.ExecID {
			t.Fatalf("%s: exec_id %s, want %s", g.subject, g.cmd.ExecID, fired.ExecID)
		}
	}
	a.stop() // the server restarts

	v.fleet.set("pc-1", "pc-2", "pc-3", "pc-4") // a PC enrolled meanwhile
	b := v.newNode(nil).start(t)
	fired = b.events.wait("fired", isKind(scheduler.EventFired, "baseline"))
	if !slices.Equal(fired.PCs, []string{"pc-4"}) {
		t.Fatalf("after restart fired for %v, want only pc-4", fired.PCs)
	}
	if g := v.cmds.next(); g.subject != "commands.pc.pc-4" {
		t.Fatalf("after restart: %s", g.subject)
	}
	// Later reconciles fire nothing more.
	for i := 1; i <= 3; i++ {
		at := t0.Add(time.Duration(i) * time.Minute)
		v.clk.Set(at)
		b.events.waitTick(at, "baseline", 0)
	}
	v.cmds.none()
}

// failFirst makes the first Start fail before anything is stored, like a
// crash between the decision and the launch.
type failFirst struct {
	scheduler.Starter
	failed bool
}

func (f *failFirst) Start(ctx context.Context, job jobs.Manifest, plan jobs.Plan) (jobs.Execution, error) {
	if !f.failed {
		f.failed = true
		return jobs.Execution{}, errors.New("connection lost")
	}
	return f.Starter.Start(ctx, job, plan)
}

func TestPerPCLaunchInterruptedBeforePublishingIsCompletedOnceAfterARestart(t *testing.T) {
	v := newEnv(t)
	v.fleet.set("pc-1", "pc-2")
	v.putSchedule("id: baseline\njob: patch\nper_pc: once\ntarget: {all: true}\n")
	a := v.newNode(func(s scheduler.Starter) scheduler.Starter { return &failFirst{Starter: s} }).start(t)
	failed := a.events.wait("error", isKind(scheduler.EventError, "baseline"))
	a.stop() // the process dies with the launch decided but not done
	v.cmds.none()

	b := v.newNode(nil).start(t)
	fired := b.events.wait("fired", isKind(scheduler.EventFired, "baseline"))
	if fired.ExecID != failed.ExecID {
		t.Fatalf("completed under exec_id %s, the decision was %s", fired.ExecID, failed.ExecID)
	}
	gs := v.cmds.take(2)
	if s := subjects(gs); !slices.Equal(s, []string{"commands.pc.pc-1", "commands.pc.pc-2"}) {
		t.Fatalf("subjects %v", s)
	}
	v.clk.Advance(time.Minute)
	b.events.waitTick(v.clk.Now(), "baseline", 0)
	v.cmds.none()
}

func TestPerPCEveryRefiresAfterTheInterval(t *testing.T) {
	v := newEnv(t)
	v.fleet.set("pc-1")
	v.putSchedule("id: compliance\njob: patch\nper_pc: {every: 6h}\ntarget: {pcs: [pc-1]}\n")
	a := v.newNode(nil).start(t)
	first := a.events.wait("fired", isKind(scheduler.EventFired, "compliance"))
	if !first.At.Equal(t0) {
		t.Fatalf("first fire at %s", first.At)
	}
	v.cmds.next()

	v.clk.Set(t0.Add(6*time.Hour - time.Minute))
	a.events.waitTick(t0.Add(6*time.Hour-time.Minute), "compliance", 0)
	v.cmds.none()

	v.clk.Set(t0.Add(6 * time.Hour))
	second := a.events.wait("second fire", func(e scheduler.Event) bool {
		return e.Kind == scheduler.EventFired && e.At.Equal(t0.Add(6*time.Hour))
	})
	if second.ExecID == first.ExecID {
		t.Fatal("the refire reused the exec_id")
	}
	if g := v.cmds.next(); g.subject != "commands.pc.pc-1" || g.cmd.ExecID != second.ExecID {
		t.Fatalf("refire: %s %s", g.subject, g.cmd.ExecID)
	}
}

func TestFreezeBlocksScheduledFiresButNotManualRuns(t *testing.T) {
	v := newEnv(t)
	ctx := testCtx(t)
	fleetKV, err := v.js.KeyValue(ctx, wire.BucketFleetConfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fleetKV.Put(ctx, scheduler.FreezeKey, []byte(`{"frozen": true}`)); err != nil {
		t.Fatal(err)
	}
	v.fleet.set("pc-1")
	v.putSchedule("id: baseline\njob: patch\nper_pc: once\ntarget: {all: true}\n")
	rev := v.putSchedule(nightly)
	a := v.newNode(nil).start(t)
	skipped := a.events.wait("skipped", isKind(scheduler.EventSkipped, "baseline"))
	if skipped.Reason != "frozen" {
		t.Fatalf("reason %q", skipped.Reason)
	}
	slot := time.Date(2026, 3, 3, 2, 0, 0, 0, time.UTC)
	v.clk.Set(slot)
	skipped = a.events.wait("cron skipped", isKind(scheduler.EventSkipped, "nightly"))
	if !skipped.Slot.Equal(slot) || skipped.Reason != "frozen" {
		t.Fatalf("cron skip: %+v", skipped)
	}
	a.events.waitTick(slot, "nightly", rev)
	v.cmds.none()

	// A manual run still goes out.
	cat, err := jobs.OpenCatalog(ctx, v.js)
	if err != nil {
		t.Fatal(err)
	}
	job, err := cat.Get(ctx, "patch")
	if err != nil {
		t.Fatal(err)
	}
	x, err := a.ex.Start(ctx, job.Manifest, jobs.Plan{Target: jobs.Target{PCs: []string{"pc-1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if g := v.cmds.next(); g.cmd.ExecID != x.ExecID {
		t.Fatalf("manual run: %+v", g)
	}
	if n := len(a.events.all(isKind(scheduler.EventFired, ""))); n != 0 {
		t.Fatalf("%d scheduled fires while frozen", n)
	}

	// Thawed, the reconcile form catches up (the frozen cron slot does not).
	if _, err := fleetKV.Put(ctx, scheduler.FreezeKey, []byte("false")); err != nil {
		t.Fatal(err)
	}
	v.clk.Advance(time.Minute)
	fired := a.events.wait("fired after thaw", isKind(scheduler.EventFired, "baseline"))
	if g := v.cmds.next(); g.subject != "commands.pc.pc-1" || g.cmd.ExecID != fired.ExecID {
		t.Fatalf("after thaw: %s", g.subject)
	}
	v.cmds.none()
}

func TestDisabledScheduleDoesNotFire(t *testing.T) {
	v := newEnv(t)
	ctx := testCtx(t)
	v.fleet.set("pc-1")
	rev := v.putSchedule("id: baseline\njob: patch\nenabled: false\nper_pc: once\ntarget: {all: true}\n")
	a := v.newNode(nil).start(t)
	a.events.waitTick(t0, "baseline", rev)
	v.clk.Advance(time.Minute)
	a.events.waitTick(t0.Add(time.Minute), "baseline", rev)
	v.cmds.none()
	if n := len(a.events.all(isKind(scheduler.EventFired, ""))); n != 0 {
		t.Fatalf("a disabled schedule fired %d times", n)
	}
	// Enabling it (hot reload through the watch) is all it took.
	if _, err := v.store.SetEnabled(ctx, "baseline", true); err != nil {
		t.Fatal(err)
	}
	a.events.wait("fired", isKind(scheduler.EventFired, "baseline"))
	if g := v.cmds.next(); g.subject != "commands.pc.pc-1" {
		t.Fatalf("got %s", g.subject)
	}
}

func TestStoreRejectsBadSchedulesAndWritesNothing(t *testing.T) {
	v := newEnv(t)
	ctx := testCtx(t)
	for name, doc := range map[string]string{
		"bad cron":     "id: s1\njob: patch\ncron: \"0 25 * * *\"\ntarget: {all: true}\n",
		"bad timezone": "id: s1\njob: patch\ncron: \"@daily\"\ntimezone: Europe/Pariss\ntarget: {all: true}\n",
		"unknown key":  "id: s1\njob: patch\ncron: \"@daily\"\ntarget: {all: true}\nretries: 3\n",
	} {
		if _, err := scheduler.ParseStrict([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A schedule built in code is validated by Put too.
	bad := scheduler.Schedule{ID: "s1", Job: "patch", Enabled: true, Cron: "every day", Target: jobs.Target{All: true}}
	var ve *jobs.ValidationError
	if _, err := v.store.Put(ctx, bad, 0); !errors.As(err, &ve) {
		t.Fatalf("Put(bad cron) = %v", err)
	}
	unknownJob := scheduler.Schedule{ID: "s1", Job: "nope", Enabled: true, Cron: "@daily", Target: jobs.Target{All: true}}
	if _, err := v.store.Put(ctx, unknownJob, 0); !errors.Is(err, scheduler.ErrUnknownJob) {
		t.Fatalf("Put(unknown job) = %v", err)
	}
	if _, err := v.store.Get(ctx, "s1"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("something was written: %v", err)
	}
	// CAS: a second create conflicts.
	good := unknownJob
	good.Job = "patch"
	rev, err := v.store.Put(ctx, good, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.store.Put(ctx, good, 0); !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("second create: %v", err)
	}
	if _, err := v.store.Put(ctx, good, rev); err != nil {
		t.Fatal(err)
	}
	if _, err := v.store.Put(ctx, good, rev); !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
}

func TestOnlyTheLeaseHolderFires(t *testing.T) {
	v := newEnv(t)
	v.fleet.set("pc-1", "pc-2", "pc-3")
	a := v.newNode(nil).start(t)
	a.events.wait("a leads", isKind(scheduler.EventLeader, ""))
	b := v.newNode(nil).start(t)
	v.putSchedule("id: baseline\njob: patch\nper_pc: once\ntarget: {all: true}\n")
	rev := v.putSchedule("id: minutely\njob: patch\ncron: \"* * * * *\"\ntarget: {pcs: [pc-1]}\n")
	a.events.wait("fired", isKind(scheduler.EventFired, "baseline"))
	v.cmds.take(3)
	// Two minutes pass in lease-renewal steps: both replicas are alive,
	// the cron slots at 10:01 and 10:02 come.
	for at := t0.Add(5 * time.Second); !at.After(t0.Add(2 * time.Minute)); at = at.Add(5 * time.Second) {
		v.clk.Set(at)
		a.events.waitTick(at, "minutely", rev)
	}
	for _, g := range v.cmds.take(2) {
		if g.subject != "commands.pc.pc-1" {
			t.Fatalf("cron fire: %s", g.subject)
		}
	}
	v.cmds.none()
	if n := len(b.events.all(func(e scheduler.Event) bool { return e.Kind == scheduler.EventFired || e.Kind == scheduler.EventTick })); n != 0 {
		t.Fatalf("the follower acted %d times", n)
	}
	if n := len(a.events.all(isKind(scheduler.EventFired, ""))); n != 3 {
		t.Fatalf("the leader fired %d times, want 3", n)
	}
	if !a.s.Leader() || b.s.Leader() {
		t.Fatalf("leaders: a=%v b=%v", a.s.Leader(), b.s.Leader())
	}
}

func TestFollowerTakesOverWhenTheHolderStopsRenewing(t *testing.T) {
	v := newEnv(t)
	ctx := testCtx(t)
	a := v.newNode(nil).start(t)
	a.events.wait("a leads", isKind(scheduler.EventLeader, ""))
	b := v.newNode(nil).start(t)
	// b has looked at the lease and found it held.
	v.clk.Advance(5 * time.Second)
	a.events.waitTick(v.clk.Now(), "", 0)

	a.nc.Close() // a hangs: it can no longer renew
	for i := 0; !b.s.Leader(); i++ {
		if i == 10 {
			t.Fatal("b never took over")
		}
		v.clk.Advance(5 * time.Second)
		// Both loops have handled this instant once each is asleep again.
		if err := v.clk.WaitFor(ctx, func(ds []time.Time) bool { return len(ds) >= 2 }); err != nil {
			t.Fatal(err)
		}
	}
	took := b.events.wait("b leads", isKind(scheduler.EventLeader, ""))
	if took.Reason != a.s.ID {
		t.Fatalf("took over from %q, want %q", took.Reason, a.s.ID)
	}
	if elapsed := took.At.Sub(t0.Add(5 * time.Second)); elapsed < leaseTTL {
		t.Fatalf("took over %s after a's last renewal, before the %s TTL", elapsed, leaseTTL)
	}
	lease, err := v.js.KeyValue(ctx, scheduler.BucketLease)
	if err != nil {
		t.Fatal(err)
	}
	e, err := lease.Get(ctx, "leader")
	if err != nil {
		t.Fatal(err)
	}
	var val struct{ Holder string }
	if err := json.Unmarshal(e.Value(), &val); err != nil || val.Holder != b.s.ID {
		t.Fatalf("lease holder %q (%v), want %q", val.Holder, err, b.s.ID)
	}
	// The new leader fires.
	v.fleet.set("pc-1")
	v.putSchedule("id: baseline\njob: patch\nper_pc: once\ntarget: {all: true}\n")
	b.events.wait("fired", isKind(scheduler.EventFired, "baseline"))
	if g := v.cmds.next(); g.subject != "commands.pc.pc-1" {
		t.Fatalf("got %s", g.subject)
	}
	v.cmds.none()
}

func TestGracefulStopHandsTheLeaseOverAtOnce(t *testing.T) {
	v := newEnv(t)
	a := v.newNode(nil).start(t)
	a.events.wait("a leads", isKind(scheduler.EventLeader, ""))
	b := v.newNode(nil).start(t)
	a.stop()
	if a.s.Leader() {
		t.Fatal("a still leads after stopping")
	}
	// b's next poll (a third of the TTL) finds the lease released.
	v.clk.Advance(leaseTTL / 3)
	took := b.events.wait("b leads", isKind(scheduler.EventLeader, ""))
	if took.Reason != "" || took.At.Sub(t0) >= leaseTTL {
		t.Fatalf("took over from %q at %s", took.Reason, took.At)
	}
}

func TestDeletingAScheduleForgetsWhatItFired(t *testing.T) {
	v := newEnv(t)
	ctx := testCtx(t)
	v.fleet.set("pc-1")
	const doc = "id: baseline\njob: patch\nper_pc: once\ntarget: {all: true}\n"
	v.putSchedule(doc)
	a := v.newNode(nil).start(t)
	first := a.events.wait("fired", isKind(scheduler.EventFired, "baseline"))
	v.cmds.next()
	if err := v.store.Delete(ctx, "baseline", 0); err != nil {
		t.Fatal(err)
	}
	// Created again under the same id, it is a new schedule: pc-1 runs it.
	v.putSchedule(doc)
	second := a.events.wait("fired again", func(e scheduler.Event) bool {
		return e.Kind == scheduler.EventFired && e.ExecID != first.ExecID
	})
	if g := v.cmds.next(); g.subject != "commands.pc.pc-1" || g.cmd.ExecID != second.ExecID {
		t.Fatalf("got %s %s", g.subject, g.cmd.ExecID)
	}
}
