package scheduler

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/kanade-project/kanade/internal/jobs"
	"github.com/kanade-project/kanade/internal/jobs/clock"
	"github.com/kanade-project/kanade/internal/wire"
)

// BucketState holds what the scheduler fired, so that a restart (or a new
// leader) neither repeats nor loses a fire. Keys:
//
//	c.<schedule>                cron cursor: every slot up to it is handled
//	p.<schedule>.<pc>           per_pc: when the PC was last fired, and by which exec
//	x.<schedule>.<exec_id>      a per_pc launch decided but not yet confirmed
//
// A PC id that is not a plain KV token is written "=" + base64url.
const BucketState = "schedule_state"

// BucketLease holds the scheduler lease (key "leader"): only its holder
// fires. The holder renews it every LeaseTTL/3 with compare-and-set on the
// revision; another replica takes it over when it has seen the same
// revision for a whole LeaseTTL on its own clock. Expiry is judged from
// revisions observed, never by comparing two machines' clocks.
const BucketLease = "scheduler_lease"

const leaseKey = "leader"

// Ensure creates (or reconciles) the scheduler's buckets. replicas ≤ 0 means 1.
func Ensure(ctx context.Context, js jetstream.JetStream, replicas int) error {
	if replicas <= 0 {
		replicas = 1
	}
	for _, cfg := range []jetstream.KeyValueConfig{
		{Bucket: BucketState, Description: "kanade scheduler: cron cursors and per-PC fires", History: 1, MaxBytes: 256 << 20},
		{Bucket: BucketLease, Description: "kanade scheduler: the active scheduler's lease", History: 1, MaxBytes: 1 << 20},
	} {
		cfg.Storage = jetstream.FileStorage
		cfg.Replicas = replicas
		if _, err := js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			return fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
		}
	}
	return nil
}

// Fleet lists the PCs a target selects (the backend implements it over its
// agents table). per_pc schedules need it.
type Fleet interface {
	PCs(ctx context.Context, target jobs.Target) ([]string, error)
}

// Starter is the part of *jobs.Executor the scheduler fires through.
type Starter interface {
	Start(ctx context.Context, job jobs.Manifest, plan jobs.Plan) (jobs.Execution, error)
	Get(ctx context.Context, execID string) (jobs.Execution, error)
}

// Event kinds.
const (
	// EventFired: a schedule fired (ExecID, Slot for cron, PCs for per_pc).
	EventFired = "fired"
	// EventSkipped: a due fire was not made (Reason: frozen, missed, ...).
	EventSkipped = "skipped"
	// EventError: a fire failed or a schedule is unusable (Reason).
	EventError = "error"
	// EventLeader / EventFollower: this scheduler took / lost the lease.
	EventLeader   = "leader"
	EventFollower = "follower"
	// EventTick: the leader evaluated every schedule (Schedules holds the
	// revision of each one it saw).
	EventTick = "tick"
)

// Event reports what the scheduler did, for audit, metrics and tests.
type Event struct {
	Kind      string
	At        time.Time
	Schedule  string
	ExecID    string
	Slot      time.Time
	PCs       []string
	Reason    string
	Schedules map[string]uint64
}

// Scheduler fires schedules while it holds the lease.
type Scheduler struct {
	JS    jetstream.JetStream
	Exec  Starter
	Fleet Fleet
	// Clock defaults to the wall clock.
	Clock clock.Clock
	Log   *slog.Logger
	// ID identifies this scheduler in the lease; unique per process.
	ID string
	// LeaseTTL default 15 s.
	LeaseTTL time.Duration
	// ReconcileInterval: how often per_pc schedules are compared with the
	// fleet. Default 1 min.
	ReconcileInterval time.Duration
	// RetryDelay after a failed KV write, fleet query or launch. Default 5 s.
	RetryDelay time.Duration
	// BatchSize caps the PCs of one per_pc execution. Default 1000.
	BatchSize int
	// OnEvent, when set, is called from the scheduler's goroutine; it must
	// not block.
	OnEvent func(Event)

	leader atomic.Bool

	// Loop state, owned by Run's goroutine.
	kvSched, kvState, kvLease, kvFleet jetstream.KeyValue
	catalog                            *jobs.Catalog
	schedules                          map[string]schedEntry
	revs                               map[string]keyRev
	crons                              map[string]cronState
	pcs                                map[string]map[string]pcState
	launches                           map[string]map[string]launchState
	lease                              leaseView
	nextReconcile                      time.Time
	perPCDue                           map[string]time.Time
	dirty                              bool
}

// New returns a scheduler with a fresh ID.
func New(js jetstream.JetStream, exec Starter, fleet Fleet) *Scheduler {
	host, _ := os.Hostname()
	return &Scheduler{JS: js, Exec: exec, Fleet: fleet, ID: cmp.Or(host, "kanade") + "-" + nuid.Next()}
}

// Leader reports whether this scheduler holds the lease.
func (s *Scheduler) Leader() bool { return s.leader.Load() }

type schedEntry struct {
	s   Schedule
	rev uint64
	// written is when this revision was stored (broker time).
	written time.Time
	err     error
}

type keyRev struct {
	rev     uint64
	deleted bool
}

type cronState struct {
	// Spec is Schedule.cronKey() when the cursor was set.
	Spec   string    `json:"spec"`
	Cursor time.Time `json:"cursor"`
	// ExecID is the last fire's; Pending means it is not confirmed yet.
	ExecID   string    `json:"exec_id,omitempty"`
	Pending  bool      `json:"pending,omitempty"`
	FiredAt  time.Time `json:"fired_at,omitzero"`
	LastSkip string    `json:"last_skip,omitempty"`
}

type pcState struct {
	PC     string    `json:"pc"`
	At     time.Time `json:"at"`
	ExecID string    `json:"exec_id"`
}

type launchState struct {
	At time.Time `json:"at"`
}

type leaseValue struct {
	Holder    string    `json:"holder"`
	RenewedAt time.Time `json:"renewed_at"`
}

type leaseView struct {
	rev       uint64
	holder    string
	seenAt    time.Time
	nextPoll  time.Time
	renewedAt time.Time
}

func stateCronKey(id string) string           { return "c." + id }
func statePCKey(id, pc string) string         { return "p." + id + "." + pcToken(pc) }
func stateLaunchKey(id, execID string) string { return "x." + id + "." + execID }

// pcToken turns a pc_id (any subject token) into a KV key token.
func pcToken(pc string) string {
	for _, r := range pc {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return "=" + base64.RawURLEncoding.EncodeToString([]byte(pc))
		}
	}
	return pc
}

func (s *Scheduler) clk() clock.Clock { return clock.Or(s.Clock) }

func (s *Scheduler) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

func (s *Scheduler) leaseTTL() time.Duration   { return cmp.Or(s.LeaseTTL, 15*time.Second) }
func (s *Scheduler) retryDelay() time.Duration { return cmp.Or(s.RetryDelay, 5*time.Second) }
func (s *Scheduler) batchSize() int {
	return min(cmp.Or(s.BatchSize, 1000), jobs.MaxTargetEntries)
}
func (s *Scheduler) reconcileInterval() time.Duration {
	return cmp.Or(s.ReconcileInterval, time.Minute)
}

func (s *Scheduler) emit(e Event) {
	if e.At.IsZero() {
		e.At = s.clk().Now()
	}
	if s.OnEvent != nil {
		s.OnEvent(e)
	}
}

// Run schedules until ctx ends. It watches schedules and schedule_state,
// competes for the lease, and while it holds it fires what is due. On
// return it releases the lease so that another replica takes over at once.
func (s *Scheduler) Run(ctx context.Context) error {
	if s.ID == "" {
		return errors.New("scheduler: empty ID (use New)")
	}
	defer s.release()
	for {
		err := s.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		// Without a session nothing is renewed or fired; holding on to
		// the lease would only delay a takeover.
		s.stepDown("lost the broker: " + err.Error())
		s.log().Warn("scheduler: restarting its watches", "err", err)
		t := s.clk().NewTimer(s.retryDelay())
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

func (s *Scheduler) release() {
	if !s.leader.Load() || s.kvLease == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.kvLease.Delete(ctx, leaseKey, jetstream.LastRevision(s.lease.rev)); err != nil {
		s.log().Warn("scheduler: could not release the lease; another replica takes over when it expires", "err", err)
	}
	s.stepDown("stopped")
}

func (s *Scheduler) open(ctx context.Context) error {
	var err error
	if s.kvSched, err = s.JS.KeyValue(ctx, wire.BucketSchedules); err != nil {
		return fmt.Errorf("bucket %s: %w", wire.BucketSchedules, err)
	}
	if s.kvState, err = s.JS.KeyValue(ctx, BucketState); err != nil {
		return fmt.Errorf("bucket %s (scheduler.Ensure): %w", BucketState, err)
	}
	if s.kvLease, err = s.JS.KeyValue(ctx, BucketLease); err != nil {
		return fmt.Errorf("bucket %s (scheduler.Ensure): %w", BucketLease, err)
	}
	if s.kvFleet, err = s.JS.KeyValue(ctx, wire.BucketFleetConfig); err != nil {
		return fmt.Errorf("bucket %s: %w", wire.BucketFleetConfig, err)
	}
	if s.catalog, err = jobs.OpenCatalog(ctx, s.JS); err != nil {
		return err
	}
	return nil
}

// session runs until a watch ends or ctx does.
func (s *Scheduler) session(ctx context.Context) error {
	if err := s.open(ctx); err != nil {
		return err
	}
	schedW, err := s.kvSched.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer schedW.Stop()
	stateW, err := s.kvState.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer stateW.Stop()
	// The freeze flag is read when firing; watching it as well makes a
	// thaw take effect now rather than at the next reconcile (a minute):
	// per_pc schedules held by the freeze fire as soon as it is lifted.
	freezeW, err := s.kvFleet.Watch(ctx, FreezeKey)
	if err != nil {
		return err
	}
	defer freezeW.Stop()

	s.schedules = map[string]schedEntry{}
	s.revs = map[string]keyRev{}
	s.crons = map[string]cronState{}
	s.pcs = map[string]map[string]pcState{}
	s.launches = map[string]map[string]launchState{}
	s.perPCDue = map[string]time.Time{}
	s.dirty = true

	schedReady, stateReady := false, false
	onSched := func(ent jetstream.KeyValueEntry, ok bool) error {
		switch {
		case !ok:
			return errors.New("the schedules watch ended")
		case ent == nil:
			schedReady = true
		default:
			s.applySchedule(ent)
		}
		return nil
	}
	onFreeze := func(ent jetstream.KeyValueEntry, ok bool) error {
		if !ok {
			return errors.New("the freeze watch ended")
		}
		if ent != nil {
			s.dirty = true
		}
		return nil
	}
	onState := func(ent jetstream.KeyValueEntry, ok bool) error {
		switch {
		case !ok:
			return errors.New("the schedule_state watch ended")
		case ent == nil:
			stateReady = true
		default:
			s.applyState(ent.Key(), ent.Value(), ent.Revision(), ent.Operation() != jetstream.KeyValuePut)
		}
		return nil
	}
	var timer clock.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var timerC <-chan time.Time
		if timer != nil {
			timerC = timer.C()
		}
		var err error
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ent, ok := <-schedW.Updates():
			err = onSched(ent, ok)
		case ent, ok := <-stateW.Updates():
			err = onState(ent, ok)
		case ent, ok := <-freezeW.Updates():
			err = onFreeze(ent, ok)
		case <-timerC:
			timer = nil
		}
		// Take whatever else is already queued (a burst of our own
		// writes comes back through the watch): one tick for all of it.
	drain:
		for range 10_000 {
			if err != nil {
				return err
			}
			select {
			case ent, ok := <-schedW.Updates():
				err = onSched(ent, ok)
			case ent, ok := <-stateW.Updates():
				err = onState(ent, ok)
			case ent, ok := <-freezeW.Updates():
				err = onFreeze(ent, ok)
			default:
				break drain
			}
		}
		if err != nil {
			return err
		}
		if !schedReady || !stateReady {
			continue
		}
		next := s.tick(ctx)
		if timer != nil {
			timer.Stop()
			timer = nil
		}
		if !next.IsZero() {
			timer = s.clk().TimerAt(next)
		}
	}
}

func (s *Scheduler) applySchedule(ent jetstream.KeyValueEntry) {
	s.dirty = true
	id := ent.Key()
	if ent.Operation() != jetstream.KeyValuePut {
		delete(s.schedules, id)
		return
	}
	if old, ok := s.schedules[id]; ok && old.rev >= ent.Revision() {
		return
	}
	sc, err := ParseLenient(ent.Value())
	if err == nil {
		err = sc.Validate()
	}
	if err == nil && sc.ID != id {
		err = fmt.Errorf("stored under key %q but its id is %q", id, sc.ID)
	}
	if err != nil {
		s.log().Warn("scheduler: ignoring an unusable schedule", "schedule", id, "err", err)
		s.emit(Event{Kind: EventError, Schedule: id, Reason: err.Error()})
	}
	s.schedules[id] = schedEntry{s: sc, rev: ent.Revision(), written: ent.Created(), err: err}
}

// applyState records a schedule_state entry (from the watch or from our
// own writes); entries at or below the revision already known are stale.
func (s *Scheduler) applyState(key string, value []byte, rev uint64, deleted bool) {
	if kr, ok := s.revs[key]; ok && kr.rev >= rev {
		return
	}
	s.revs[key] = keyRev{rev: rev, deleted: deleted}
	kind, rest, _ := strings.Cut(key, ".")
	switch kind {
	case "c":
		if deleted {
			delete(s.crons, rest)
			return
		}
		var st cronState
		if json.Unmarshal(value, &st) == nil {
			s.crons[rest] = st
		}
	case "p", "x":
		id, sub, ok := strings.Cut(rest, ".")
		if !ok {
			return
		}
		if kind == "p" {
			if deleted {
				delete(s.pcs[id], sub)
				return
			}
			var st pcState
			if json.Unmarshal(value, &st) == nil {
				if s.pcs[id] == nil {
					s.pcs[id] = map[string]pcState{}
				}
				s.pcs[id][sub] = st
			}
			return
		}
		if deleted {
			delete(s.launches[id], sub)
			return
		}
		var st launchState
		if json.Unmarshal(value, &st) == nil {
			if s.launches[id] == nil {
				s.launches[id] = map[string]launchState{}
			}
			s.launches[id][sub] = st
		}
	}
}

// putState writes key with compare-and-set against the revision this
// scheduler last saw; a conflict means another writer got there first.
func (s *Scheduler) putState(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	kr, ok := s.revs[key]
	var rev uint64
	if !ok || kr.deleted {
		rev, err = s.kvState.Create(ctx, key, b)
	} else {
		rev, err = s.kvState.Update(ctx, key, b, kr.rev)
	}
	if err != nil {
		return err
	}
	s.applyState(key, b, rev, false)
	return nil
}

func (s *Scheduler) deleteState(ctx context.Context, key string) error {
	kr, ok := s.revs[key]
	if !ok || kr.deleted {
		return nil
	}
	if err := s.kvState.Delete(ctx, key, jetstream.LastRevision(kr.rev)); err != nil {
		return err
	}
	// The delete marker's revision is unknown here; the watch brings it.
	// Mark the key deleted now so it is not used meanwhile.
	s.revs[key] = keyRev{rev: kr.rev, deleted: true}
	kind, rest, _ := strings.Cut(key, ".")
	id, sub, _ := strings.Cut(rest, ".")
	switch kind {
	case "p":
		delete(s.pcs[id], sub)
	case "x":
		delete(s.launches[id], sub)
	case "c":
		delete(s.crons, rest)
	}
	return nil
}

// tick keeps the lease and, when holding it, fires what is due. It returns
// when to tick again.
func (s *Scheduler) tick(ctx context.Context) time.Time {
	now := s.clk().Now()
	next := s.maintainLease(ctx, now)
	if !s.leader.Load() {
		return next
	}
	if w := s.work(ctx, now); !w.IsZero() && w.Before(next) {
		next = w
	}
	revs := make(map[string]uint64, len(s.schedules))
	for id, e := range s.schedules {
		revs[id] = e.rev
	}
	s.emit(Event{Kind: EventTick, At: now, Schedules: revs})
	return next
}

func (s *Scheduler) leaseValue(now time.Time) []byte {
	b, _ := json.Marshal(leaseValue{Holder: s.ID, RenewedAt: now.UTC()})
	return b
}

func (s *Scheduler) becomeLeader(rev uint64, now time.Time, from string) {
	s.lease.rev, s.lease.holder, s.lease.renewedAt, s.lease.seenAt = rev, s.ID, now, now
	s.leader.Store(true)
	s.dirty = true
	s.log().Info("scheduler: took the lease", "id", s.ID, "previous_holder", from)
	s.emit(Event{Kind: EventLeader, At: now, Reason: from})
}

func (s *Scheduler) stepDown(reason string) {
	if !s.leader.Swap(false) {
		return
	}
	now := s.clk().Now()
	s.lease.seenAt, s.lease.nextPoll = now, now
	s.log().Warn("scheduler: lost the lease", "id", s.ID, "reason", reason)
	s.emit(Event{Kind: EventFollower, At: now, Reason: reason})
}

// maintainLease renews the lease (holder) or watches for it to expire
// (others) and returns when to look again.
func (s *Scheduler) maintainLease(ctx context.Context, now time.Time) time.Time {
	ttl := s.leaseTTL()
	every := ttl / 3
	if s.leader.Load() {
		renewAt := s.lease.renewedAt.Add(every)
		if now.Before(renewAt) {
			return renewAt
		}
		rev, err := s.kvLease.Update(ctx, leaseKey, s.leaseValue(now), s.lease.rev)
		switch {
		case err == nil:
			s.lease.rev, s.lease.renewedAt = rev, now
			return now.Add(every)
		case jobs.IsCASConflict(err), errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
			s.stepDown("the lease was taken over")
		default:
			if !now.Before(s.lease.renewedAt.Add(ttl)) {
				s.stepDown("could not renew the lease: " + err.Error())
			} else {
				return now.Add(min(s.retryDelay(), every))
			}
		}
	}
	if now.Before(s.lease.nextPoll) {
		return s.lease.nextPoll
	}
	s.lease.nextPoll = now.Add(every)
	ent, err := s.kvLease.Get(ctx, leaseKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		if rev, err := s.kvLease.Create(ctx, leaseKey, s.leaseValue(now)); err == nil {
			s.becomeLeader(rev, now, "")
			return now.Add(every)
		}
		return s.lease.nextPoll
	case err != nil:
		s.log().Warn("scheduler: reading the lease", "err", err)
		return s.lease.nextPoll
	}
	// The revision is known to be current only once the read returns:
	// date the observation then, never earlier (an earlier date would
	// shorten the holder's lease).
	now = s.clk().Now()
	if ent.Revision() != s.lease.rev {
		var v leaseValue
		_ = json.Unmarshal(ent.Value(), &v)
		s.lease.rev, s.lease.holder, s.lease.seenAt = ent.Revision(), v.Holder, now
	}
	expires := s.lease.seenAt.Add(ttl)
	if s.lease.holder == s.ID || !now.Before(expires) {
		if rev, err := s.kvLease.Update(ctx, leaseKey, s.leaseValue(now), s.lease.rev); err == nil {
			s.becomeLeader(rev, now, s.lease.holder)
			return now.Add(every)
		}
		return s.lease.nextPoll
	}
	if expires.Before(s.lease.nextPoll) {
		return expires
	}
	return s.lease.nextPoll
}

// work fires what is due and returns when something will be due next.
func (s *Scheduler) work(ctx context.Context, now time.Time) time.Time {
	var next time.Time
	later := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	var frozenDone bool
	var frozenVal bool
	var frozenErr error
	frozen := func() (bool, error) {
		if !frozenDone {
			frozenVal, frozenErr = s.frozen(ctx)
			frozenDone = true
		}
		return frozenVal, frozenErr
	}
	reconcile := s.dirty || !now.Before(s.nextReconcile)
	if reconcile {
		s.dirty = false
		s.nextReconcile = now.Add(s.reconcileInterval())
	}
	ids := make([]string, 0, len(s.schedules))
	for id := range s.schedules {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if ctx.Err() != nil {
			return next
		}
		e := s.schedules[id]
		if e.err != nil {
			continue
		}
		// A long pass must not outlive the lease unnoticed.
		if s.maintainLease(ctx, s.clk().Now()); !s.leader.Load() {
			return next
		}
		if e.s.Cron != "" {
			later(s.doCron(ctx, e, now, frozen))
			continue
		}
		if due, ok := s.perPCDue[id]; reconcile || (ok && !now.Before(due)) {
			delete(s.perPCDue, id)
			if at := s.doPerPC(ctx, e.s, now, frozen); !at.IsZero() {
				s.perPCDue[id] = at
			}
		}
		if due, ok := s.perPCDue[id]; ok {
			later(due)
		}
	}
	later(s.nextReconcile)
	return next
}

// frozen reads fleet_config/freeze.
func (s *Scheduler) frozen(ctx context.Context) (bool, error) {
	ent, err := s.kvFleet.Get(ctx, FreezeKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading %s/%s: %w", wire.BucketFleetConfig, FreezeKey, err)
	}
	f, perr := ParseFreeze(ent.Value())
	if perr != nil {
		s.log().Warn("scheduler: "+perr.Error(), "bucket", wire.BucketFleetConfig, "key", FreezeKey)
	}
	return f, nil
}

func (s *Scheduler) doCron(ctx context.Context, e schedEntry, now time.Time, frozen func() (bool, error)) time.Time {
	sc := e.s
	key := stateCronKey(sc.ID)
	st, ok := s.crons[sc.ID]
	retry := now.Add(s.retryDelay())
	if !ok || st.Spec != sc.cronKey() {
		// New, changed, disabled or re-enabled: slots from before this
		// revision was written are not caught up. A slot between the
		// write and this first look (a leader failover) still fires; an
		// old revision without state (state lost) starts from now.
		from := now
		if !e.written.IsZero() && e.written.Before(from) && now.Sub(e.written) <= 2*s.leaseTTL() {
			from = e.written
		}
		st = cronState{Spec: sc.cronKey(), Cursor: from.UTC()}
		if err := s.putState(ctx, key, st); err != nil {
			s.log().Warn("scheduler: writing a cron cursor", "schedule", sc.ID, "err", err)
			return retry
		}
	}
	if !sc.Enabled {
		return time.Time{}
	}
	if st.Pending {
		return s.launchCron(ctx, sc, st, now)
	}
	slot := sc.Next(st.Cursor)
	if slot.IsZero() {
		return time.Time{}
	}
	if now.Before(slot) {
		return slot
	}
	// The latest slot that is due; earlier missed ones are not repeated.
	latest := slot
	for range 1_000_000 {
		n := sc.Next(latest)
		if n.IsZero() || n.After(now) {
			break
		}
		latest = n
	}
	if sc.StartingDeadline > 0 && now.After(latest.Add(sc.StartingDeadline.D())) {
		reason := fmt.Sprintf("missed the %s slot by more than starting_deadline %s", latest.Format(time.RFC3339), sc.StartingDeadline)
		return s.skipCron(ctx, sc, st, latest, reason, now)
	}
	fz, err := frozen()
	if err != nil {
		s.log().Warn("scheduler: not firing while the freeze flag is unreadable", "schedule", sc.ID, "err", err)
		return retry
	}
	if fz {
		return s.skipCron(ctx, sc, st, latest, "frozen", now)
	}
	st.Cursor, st.Pending, st.ExecID, st.FiredAt, st.LastSkip = latest, true, nuid.Next(), now.UTC(), ""
	if err := s.putState(ctx, key, st); err != nil {
		s.log().Warn("scheduler: recording a cron fire", "schedule", sc.ID, "err", err)
		return retry
	}
	return s.launchCron(ctx, sc, st, now)
}

func (s *Scheduler) skipCron(ctx context.Context, sc Schedule, st cronState, slot time.Time, reason string, now time.Time) time.Time {
	st.Cursor, st.LastSkip, st.Pending = slot, reason, false
	if err := s.putState(ctx, stateCronKey(sc.ID), st); err != nil {
		return now.Add(s.retryDelay())
	}
	s.log().Info("scheduler: slot skipped", "schedule", sc.ID, "slot", slot, "reason", reason)
	s.emit(Event{Kind: EventSkipped, At: now, Schedule: sc.ID, Slot: slot, Reason: reason})
	return sc.Next(slot)
}

func (s *Scheduler) launchCron(ctx context.Context, sc Schedule, st cronState, now time.Time) time.Time {
	plan := jobs.Plan{ExecID: st.ExecID, Target: sc.Target, Jitter: sc.Jitter}
	var deadline time.Time
	if sc.StartingDeadline > 0 {
		deadline = st.Cursor.Add(sc.StartingDeadline.D())
		plan.DeadlineAt = deadline
	}
	out, reason := s.launch(ctx, sc, plan)
	key := stateCronKey(sc.ID)
	switch out {
	case launched, existed:
		if out == launched {
			s.log().Info("scheduler: fired", "schedule", sc.ID, "slot", st.Cursor, "exec_id", st.ExecID)
			s.emit(Event{Kind: EventFired, At: now, Schedule: sc.ID, ExecID: st.ExecID, Slot: st.Cursor})
		}
		st.Pending = false
		if err := s.putState(ctx, key, st); err != nil {
			// The fire happened; the next look finds it existing.
			return now.Add(s.retryDelay())
		}
		return sc.Next(st.Cursor)
	case abandon:
		s.emit(Event{Kind: EventError, At: now, Schedule: sc.ID, ExecID: st.ExecID, Slot: st.Cursor, Reason: reason})
		return s.skipCron(ctx, sc, st, st.Cursor, reason, now)
	}
	if !deadline.IsZero() && now.After(deadline) {
		s.emit(Event{Kind: EventError, At: now, Schedule: sc.ID, ExecID: st.ExecID, Slot: st.Cursor, Reason: reason})
		return s.skipCron(ctx, sc, st, st.Cursor, "gave up after starting_deadline: "+reason, now)
	}
	if out == dead {
		// That exec failed to publish: try again under a new id.
		st.ExecID = nuid.Next()
		_ = s.putState(ctx, key, st)
	}
	s.log().Warn("scheduler: fire not done yet; retrying", "schedule", sc.ID, "exec_id", st.ExecID, "reason", reason)
	s.emit(Event{Kind: EventError, At: now, Schedule: sc.ID, ExecID: st.ExecID, Slot: st.Cursor, Reason: "not launched yet, will retry: " + reason})
	return now.Add(s.retryDelay())
}

type outcome int

const (
	launched outcome = iota // this call started the execution
	existed                 // the execution already existed (started before a crash, or by another replica)
	dead                    // the execution exists but failed to publish
	retry                   // transient problem; try again with the same exec_id
	abandon                 // cannot ever work (job gone, invalid)
)

// launch makes sure execution plan.ExecID exists: Start is idempotent on
// the exec_id, so calling launch again after a crash never fires twice.
func (s *Scheduler) launch(ctx context.Context, sc Schedule, plan jobs.Plan) (outcome, string) {
	check := func() (outcome, string, bool) {
		x, err := s.Exec.Get(ctx, plan.ExecID)
		switch {
		case err == nil:
			if len(x.Waves) > 0 && x.Waves[0].State == jobs.WaveFailed {
				return dead, x.Waves[0].Reason, true
			}
			return existed, "", true
		case errors.Is(err, jobs.ErrNotFound):
			return 0, "", false
		default:
			return retry, err.Error(), true
		}
	}
	if o, r, known := check(); known {
		return o, r
	}
	entry, err := s.catalog.Get(ctx, sc.Job)
	if errors.Is(err, jobs.ErrNotFound) {
		return abandon, fmt.Sprintf("job %s is not in the catalog", sc.Job)
	}
	if err != nil {
		return retry, err.Error()
	}
	_, err = s.Exec.Start(ctx, entry.Manifest, plan)
	if err == nil {
		return launched, ""
	}
	if o, r, known := check(); known {
		return o, r
	}
	var ve *jobs.ValidationError
	if errors.As(err, &ve) {
		return abandon, err.Error()
	}
	return retry, err.Error()
}

func (s *Scheduler) doPerPC(ctx context.Context, sc Schedule, now time.Time, frozen func() (bool, error)) time.Time {
	if !sc.Enabled {
		return time.Time{}
	}
	retryAt := now.Add(s.retryDelay())
	var next time.Time
	later := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	// Launches decided earlier (by this or a previous leader) and not
	// confirmed: finish them with the same exec_id. Not while frozen.
	if pending := s.launches[sc.ID]; len(pending) > 0 {
		if fz, err := frozen(); err != nil || fz {
			later(retryAt)
		} else {
			for _, execID := range slices.Sorted(maps.Keys(pending)) {
				var pcs []string
				for _, st := range s.pcs[sc.ID] {
					if st.ExecID == execID {
						pcs = append(pcs, st.PC)
					}
				}
				if !s.launchBatch(ctx, sc, execID, pcs, pending[execID].At, now) {
					later(retryAt)
				}
			}
		}
	}
	if s.Fleet == nil {
		s.emit(Event{Kind: EventError, At: now, Schedule: sc.ID, Reason: "per_pc schedules need a fleet"})
		return next
	}
	all, err := s.Fleet.PCs(ctx, sc.Target)
	if err != nil {
		s.log().Warn("scheduler: listing the fleet", "schedule", sc.ID, "err", err)
		later(retryAt)
		return next
	}
	var due []string
	known := s.pcs[sc.ID]
	for _, pc := range all {
		if !wire.ValidToken(pc) {
			continue
		}
		st, ok := known[pcToken(pc)]
		switch {
		case !ok:
			due = append(due, pc)
		case sc.PerPC.Once:
		default:
			at := st.At.Add(sc.PerPC.Every.D())
			if now.Before(at) {
				later(at)
			} else if _, pendingLaunch := s.launches[sc.ID][st.ExecID]; !pendingLaunch {
				due = append(due, pc)
			}
		}
	}
	if len(due) == 0 {
		return next
	}
	slices.Sort(due)
	due = slices.Compact(due)
	fz, err := frozen()
	if err != nil {
		s.log().Warn("scheduler: not firing while the freeze flag is unreadable", "schedule", sc.ID, "err", err)
		later(retryAt)
		return next
	}
	if fz {
		s.emit(Event{Kind: EventSkipped, At: now, Schedule: sc.ID, PCs: due, Reason: "frozen"})
		return next
	}
	if _, err := s.catalog.Get(ctx, sc.Job); err != nil {
		s.emit(Event{Kind: EventError, At: now, Schedule: sc.ID, Reason: err.Error()})
		if !errors.Is(err, jobs.ErrNotFound) {
			later(retryAt)
		}
		return next
	}
	for batch := range slices.Chunk(due, s.batchSize()) {
		execID := nuid.Next()
		// Persist the decision before anything is published: a restart
		// finds it and completes it with the same exec_id.
		if err := s.putState(ctx, stateLaunchKey(sc.ID, execID), launchState{At: now.UTC()}); err != nil {
			s.log().Warn("scheduler: recording a per_pc launch", "schedule", sc.ID, "err", err)
			later(retryAt)
			return next
		}
		var pcs []string
		for _, pc := range batch {
			err := s.putState(ctx, statePCKey(sc.ID, pc), pcState{PC: pc, At: now.UTC(), ExecID: execID})
			if err != nil {
				// Another writer (a previous leader) got there first; the
				// watch brings its value and the next pass decides again.
				s.log().Debug("scheduler: per-PC state not written", "schedule", sc.ID, "pc", pc, "err", err)
				later(retryAt)
				continue
			}
			pcs = append(pcs, pc)
		}
		if !s.launchBatch(ctx, sc, execID, pcs, now, now) {
			later(retryAt)
		}
	}
	if sc.PerPC.Every > 0 {
		later(now.Add(sc.PerPC.Every.D()))
	}
	return next
}

// launchBatch completes launch execID for pcs and reports whether it is
// settled (launched, or undone so the PCs are due again).
func (s *Scheduler) launchBatch(ctx context.Context, sc Schedule, execID string, pcs []string, at, now time.Time) bool {
	xkey := stateLaunchKey(sc.ID, execID)
	if len(pcs) == 0 {
		return s.deleteState(ctx, xkey) == nil
	}
	slices.Sort(pcs)
	plan := jobs.Plan{ExecID: execID, Target: jobs.Target{PCs: pcs}, Jitter: sc.Jitter}
	if sc.StartingDeadline > 0 {
		plan.DeadlineAt = at.Add(sc.StartingDeadline.D())
	}
	out, reason := s.launch(ctx, sc, plan)
	switch out {
	case launched, existed:
		if out == launched {
			s.log().Info("scheduler: fired", "schedule", sc.ID, "exec_id", execID, "pcs", len(pcs))
			s.emit(Event{Kind: EventFired, At: now, Schedule: sc.ID, ExecID: execID, PCs: pcs})
		}
		return s.deleteState(ctx, xkey) == nil
	case dead, abandon:
		// Nothing ran: forget these PCs' fire so they are due again.
		s.emit(Event{Kind: EventError, At: now, Schedule: sc.ID, ExecID: execID, PCs: pcs, Reason: reason})
		for _, pc := range pcs {
			if err := s.deleteState(ctx, statePCKey(sc.ID, pc)); err != nil {
				return false
			}
		}
		return s.deleteState(ctx, xkey) == nil
	}
	s.log().Warn("scheduler: per_pc launch not done yet; retrying", "schedule", sc.ID, "exec_id", execID, "reason", reason)
	s.emit(Event{Kind: EventError, At: now, Schedule: sc.ID, ExecID: execID, PCs: pcs, Reason: "not launched yet, will retry: " + reason})
	return false
}
