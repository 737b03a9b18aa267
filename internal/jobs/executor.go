package jobs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/jobs/clock"
	"github.com/kanade-project/kanade/internal/wire"
)

// BucketExecPlans holds one record per execution (key = exec_id, value =
// Execution as JSON): the plan, the command template and the state of each
// wave. It is what makes pending waves survive a server restart: the
// Executor's Run loop reloads it and publishes each wave when due.
//
// A KV bucket rather than a stream because each execution is a small state
// machine updated in place with compare-and-set on its revision (claim a
// wave, mark it published or stopped), which is exactly KV's Update; a
// stream would need its own sequence bookkeeping for the same thing.
const BucketExecPlans = "exec_plans"

// ExecPlansTTL is how long an execution record is kept after its last
// change.
const ExecPlansTTL = 30 * 24 * time.Hour

// Ensure creates (or reconciles) the exec_plans bucket. replicas ≤ 0 means 1.
func Ensure(ctx context.Context, js jetstream.JetStream, replicas int) error {
	if replicas <= 0 {
		replicas = 1
	}
	_, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketExecPlans,
		Description: "kanade executions: plans and wave states (jobs.Executor)",
		History:     1,
		TTL:         ExecPlansTTL,
		MaxBytes:    256 << 20,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return fmt.Errorf("bucket %s: %w", BucketExecPlans, err)
	}
	return nil
}

// Wave states.
const (
	// WavePending: waiting for its due time.
	WavePending = "pending"
	// WavePublishing: claimed by an executor that is publishing it.
	WavePublishing = "publishing"
	// WavePublished: every command of the wave is stored in EXEC.
	WavePublished = "published"
	// WaveStopped: not published because the failure rate of the previous
	// waves exceeded stop_if_failed_pct (Reason says by how much).
	WaveStopped = "stopped"
	// WaveCancelled: not published because the execution was cancelled or
	// killed.
	WaveCancelled = "cancelled"
	// WaveFailed: publishing failed during Start; nothing more is published.
	WaveFailed = "failed"
)

// ErrExecExists: Start was given an ExecID that already has a record.
var ErrExecExists = errors.New("execution already exists")

// ResultCounter counts the results received so far for an execution. The
// backend implements it over its SQLite projection of RESULTS; total counts
// distinct results (one per PC and command), failed those that failed.
type ResultCounter interface {
	Counts(ctx context.Context, execID string) (total, failed int, err error)
}

// Execution is the stored record of one execution.
type Execution struct {
	ExecID    string    `json:"exec_id"`
	JobID     string    `json:"job_id"`
	Version   string    `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	Plan      Plan      `json:"plan"`
	// Command is the template every publish starts from (script and all);
	// request_id, exec_id, jitter_secs and deadline_at are set per publish.
	Command wire.Command `json:"command"`
	Waves   []WaveState  `json:"waves"`
	// Revision is the KV revision the record was read at.
	Revision uint64 `json:"-"`
}

// WaveState is the state of one wave (a plan without rollout has one wave:
// its whole target).
type WaveState struct {
	// Group is the wave's group; empty for the single wave of a plan
	// without rollout.
	Group string    `json:"group,omitempty"`
	DueAt time.Time `json:"due_at"`
	State string    `json:"state"`
	// Reason explains stopped, cancelled and failed states, and the last
	// publish error of a wave being retried.
	Reason string `json:"reason,omitempty"`
	// RequestBase is minted when the wave is claimed; see RequestID.
	RequestBase string `json:"request_base,omitempty"`
	// DeadlineAt is the deadline_at of the wave's commands.
	DeadlineAt *time.Time `json:"deadline_at,omitempty"`
	// Published counts the wave's publishes done (they go in order).
	Published   int       `json:"published,omitempty"`
	PublishedAt time.Time `json:"published_at,omitzero"`
	ClaimedBy   string    `json:"claimed_by,omitempty"`
	ClaimedAt   time.Time `json:"claimed_at,omitzero"`
	RetryAt     time.Time `json:"retry_at,omitzero"`
	Attempts    int       `json:"attempts,omitempty"`
}

// Done reports whether the wave will never be published again.
func (w WaveState) Done() bool {
	return w.State != WavePending && w.State != WavePublishing
}

// RequestID returns the request_id of publish j of a wave with n publishes:
// RequestBase itself when the wave has one publish, else RequestBase-j.
// Every publish of every execution thus gets its own request_id, and a
// wave re-sent after a crash carries the same ids (and bytes), which the
// agents' duplicate detection absorbs.
func (w WaveState) RequestID(j, n int) string {
	if n == 1 {
		return w.RequestBase
	}
	return w.RequestBase + "-" + strconv.Itoa(j)
}

// Publication is one command published (or to be published) by a wave.
type Publication struct {
	Wave      int
	Target    fleetclient.Target
	Subject   string
	RequestID string
	Published bool
}

// Publications lists the publishes of every claimed wave, so that the
// backend can map request_ids to waves and targets.
func (x Execution) Publications() []Publication {
	var out []Publication
	for i, ts := range x.Plan.waveTargets() {
		if i >= len(x.Waves) || x.Waves[i].RequestBase == "" {
			continue
		}
		w := x.Waves[i]
		for j, t := range ts {
			subj, _ := t.Subject()
			out = append(out, Publication{Wave: i, Target: t, Subject: subj, RequestID: w.RequestID(j, len(ts)), Published: j < w.Published})
		}
	}
	return out
}

// Executor starts executions and publishes their later waves.
type Executor struct {
	// Client publishes the commands.
	Client *fleetclient.Client
	// Counter, when set, is asked before each wave after the first; nil
	// never stops a rollout.
	Counter ResultCounter
	// Clock defaults to the wall clock.
	Clock clock.Clock
	// Log defaults to slog.Default().
	Log *slog.Logger
	// ClaimTimeout: a wave claimed by another executor (another replica,
	// or this server before a crash) that is still not published after
	// this long is taken over and re-sent with the same request ids.
	// Default 30 s.
	ClaimTimeout time.Duration
	// RetryDelay between attempts after a failed publish, KV write or
	// result count. Default 5 s.
	RetryDelay time.Duration

	id      string
	plans   jetstream.KeyValue
	current jetstream.KeyValue
	status  jetstream.KeyValue

	mu       sync.Mutex
	inflight map[string]int
	// kick wakes Run when a Start ends, in case it left work behind.
	kick chan struct{}
}

// NewExecutor opens the buckets it needs: exec_plans (see Ensure),
// script_current and script_status (bootstrap).
func NewExecutor(ctx context.Context, client *fleetclient.Client, counter ResultCounter) (*Executor, error) {
	e := &Executor{Client: client, Counter: counter, id: nuid.Next(), inflight: map[string]int{}, kick: make(chan struct{}, 1)}
	var err error
	if e.plans, err = client.JS.KeyValue(ctx, BucketExecPlans); err != nil {
		return nil, fmt.Errorf("bucket %s (call jobs.Ensure): %w", BucketExecPlans, err)
	}
	if e.current, err = client.JS.KeyValue(ctx, wire.BucketScriptCurrent); err != nil {
		return nil, fmt.Errorf("bucket %s: %w", wire.BucketScriptCurrent, err)
	}
	if e.status, err = client.JS.KeyValue(ctx, wire.BucketScriptStatus); err != nil {
		return nil, fmt.Errorf("bucket %s: %w", wire.BucketScriptStatus, err)
	}
	return e, nil
}

// ID identifies this executor in wave claims.
func (e *Executor) ID() string { return e.id }

func (e *Executor) clk() clock.Clock { return clock.Or(e.Clock) }

func (e *Executor) now() time.Time { return e.clk().Now().UTC().Round(0) }

func (e *Executor) log() *slog.Logger {
	if e.Log != nil {
		return e.Log
	}
	return slog.Default()
}

func (e *Executor) claimTimeout() time.Duration {
	return cmp.Or(e.ClaimTimeout, 30*time.Second)
}

func (e *Executor) retryDelay() time.Duration {
	return cmp.Or(e.RetryDelay, 5*time.Second)
}

func (e *Executor) setInflight(execID string, on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if on {
		e.inflight[execID]++
		return
	}
	if e.inflight[execID]--; e.inflight[execID] <= 0 {
		delete(e.inflight, execID)
	}
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

func (e *Executor) isInflight(execID string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.inflight[execID] > 0
}

// Start runs job according to plan: it pins script_current/<job id> to the
// job's version, stores the execution record, publishes the first wave (or
// the whole target) at once, and leaves later waves to Run. Every publish
// carries the same exec_id and its own request_id.
//
// When a publish fails, the first wave is marked failed (its Published
// count says how many of its commands went out), later waves are
// cancelled, and the error is returned; nothing more will be published
// for that exec_id.
func (e *Executor) Start(ctx context.Context, job Manifest, plan Plan) (Execution, error) {
	if err := job.Validate(); err != nil {
		return Execution{}, err
	}
	if err := plan.Validate(); err != nil {
		return Execution{}, err
	}
	execID := plan.ExecID
	if execID == "" {
		execID = nuid.Next()
	} else if _, err := e.plans.Get(ctx, execID); err == nil {
		return Execution{}, fmt.Errorf("exec %s: %w", execID, ErrExecExists)
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) && !errors.Is(err, jetstream.ErrKeyDeleted) {
		return Execution{}, fmt.Errorf("exec %s: %w", execID, err)
	}
	plan.ExecID = execID

	// Stop-the-bleed layer 2: the pin is in place before any agent can
	// see the command, so an agent never checks a stale pin.
	if _, err := e.current.Put(ctx, job.ID, []byte(job.Version)); err != nil {
		return Execution{}, fmt.Errorf("pinning %s/%s to %s: %w", wire.BucketScriptCurrent, job.ID, job.Version, err)
	}

	now := e.now()
	rec := Execution{
		ExecID:    execID,
		JobID:     job.ID,
		Version:   job.Version,
		CreatedAt: now,
		Plan:      plan,
		Command:   job.Command(),
	}
	due := now
	for i := range plan.waveTargets() {
		w := WaveState{DueAt: due, State: WavePending}
		if plan.Rollout != nil && i < len(plan.Rollout.Waves) {
			w.Group = plan.Rollout.Waves[i].Group
			if i > 0 {
				w.DueAt = w.DueAt.Add(plan.Rollout.Waves[i].Delay.D())
				due = w.DueAt
			}
		}
		rec.Waves = append(rec.Waves, w)
	}
	e.claim(&rec.Waves[0], rec.Plan, now)

	e.setInflight(execID, true)
	defer e.setInflight(execID, false)
	b, err := json.Marshal(rec)
	if err != nil {
		return Execution{}, err
	}
	rev, err := e.plans.Create(ctx, execID, b)
	if err != nil {
		if IsCASConflict(err) {
			return Execution{}, fmt.Errorf("exec %s: %w", execID, ErrExecExists)
		}
		return Execution{}, fmt.Errorf("storing exec %s: %w", execID, err)
	}
	rec.Revision = rev

	out, perr, rerr := e.publishWave(ctx, rec, 0)
	if perr == nil && rerr != nil {
		e.log().Warn("exec: published, but the record was not updated; the executor will re-send the wave with the same request ids", "exec_id", execID, "err", rerr)
	}
	if perr != nil {
		reason := "publish failed: " + perr.Error()
		failed, err := e.modify(ctx, execID, func(x *Execution) bool {
			if x.Waves[0].State != WavePublishing {
				return false
			}
			x.Waves[0].State = WaveFailed
			x.Waves[0].Reason = reason
			cancelPending(x, "not published: the first wave failed to publish")
			return true
		})
		if err != nil {
			e.log().Error("exec: could not record a failed first wave; the executor will retry publishing it", "exec_id", execID, "err", err)
			return out, fmt.Errorf("exec %s: %w (the executor will retry it)", execID, perr)
		}
		return failed, fmt.Errorf("exec %s: %w", execID, perr)
	}
	return out, nil
}

// claim marks w as being published by this executor now.
func (e *Executor) claim(w *WaveState, p Plan, now time.Time) {
	w.State = WavePublishing
	w.ClaimedBy = e.id
	w.ClaimedAt = now
	w.RetryAt = time.Time{}
	if w.RequestBase == "" {
		w.RequestBase = nuid.Next()
		switch {
		case !p.DeadlineAt.IsZero():
			d := p.DeadlineAt.UTC()
			w.DeadlineAt = &d
		case p.Deadline > 0:
			d := now.Add(p.Deadline.D())
			w.DeadlineAt = &d
		}
	}
}

// command builds publish j of wave i.
func (x Execution) command(i, j, n int) wire.Command {
	c := x.Command
	w := x.Waves[i]
	c.ExecID = x.ExecID
	c.RequestID = w.RequestID(j, n)
	c.JitterSecs = int(x.Plan.Jitter.D() / time.Second)
	c.DeadlineAt = w.DeadlineAt
	return c
}

// publishWave publishes the remaining commands of wave i (claimed by this
// executor in rec) and records the outcome. It returns the stored record,
// the publish error, and the error recording the outcome (then the wave
// stays claimed and is re-sent with the same request ids and bytes, which
// agents drop as duplicates).
func (e *Executor) publishWave(ctx context.Context, rec Execution, i int) (Execution, error, error) {
	targets := rec.Plan.waveTargets()[i]
	w := rec.Waves[i]
	var perr error
	for j := w.Published; j < len(targets); j++ {
		if err := e.Client.Publish(ctx, targets[j], rec.command(i, j, len(targets))); err != nil {
			perr = err
			break
		}
		w.Published = j + 1
	}
	now := e.now()
	out, err := e.modify(ctx, rec.ExecID, func(x *Execution) bool {
		xw := &x.Waves[i]
		if xw.State != WavePublishing || xw.ClaimedBy != e.id {
			return false // taken over meanwhile; the new owner re-sends
		}
		xw.Published = max(xw.Published, w.Published)
		if perr == nil {
			xw.State = WavePublished
			xw.PublishedAt = now
			xw.ClaimedBy, xw.ClaimedAt, xw.RetryAt, xw.Reason = "", time.Time{}, time.Time{}, ""
		} else {
			xw.Attempts++
			xw.Reason = "publish failed: " + perr.Error()
			xw.RetryAt = now.Add(e.retryDelay())
		}
		return true
	})
	if err != nil {
		return rec, perr, err
	}
	return out, perr, nil
}

// Get returns the record of an execution, or ErrNotFound.
func (e *Executor) Get(ctx context.Context, execID string) (Execution, error) {
	ent, err := e.plans.Get(ctx, execID)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) || errors.Is(err, jetstream.ErrInvalidKey) {
			return Execution{}, fmt.Errorf("exec %s: %w", execID, ErrNotFound)
		}
		return Execution{}, fmt.Errorf("reading exec %s: %w", execID, err)
	}
	return decodeExecution(ent)
}

func decodeExecution(ent jetstream.KeyValueEntry) (Execution, error) {
	var x Execution
	if err := json.Unmarshal(ent.Value(), &x); err != nil {
		return Execution{}, fmt.Errorf("exec record %s: %w", ent.Key(), err)
	}
	x.Revision = ent.Revision()
	if len(x.Waves) != len(x.Plan.waveTargets()) {
		return Execution{}, fmt.Errorf("exec record %s: %d wave states for %d waves", ent.Key(), len(x.Waves), len(x.Plan.waveTargets()))
	}
	return x, nil
}

// modify applies fn to the current record and stores it with
// compare-and-set, retrying on conflicts. fn returns false to leave the
// record unchanged.
func (e *Executor) modify(ctx context.Context, execID string, fn func(*Execution) bool) (Execution, error) {
	for attempt := 0; ; attempt++ {
		x, err := e.Get(ctx, execID)
		if err != nil {
			return Execution{}, err
		}
		if !fn(&x) {
			return x, nil
		}
		b, err := json.Marshal(x)
		if err != nil {
			return Execution{}, err
		}
		rev, err := e.plans.Update(ctx, execID, b, x.Revision)
		if err == nil {
			x.Revision = rev
			return x, nil
		}
		if !IsCASConflict(err) || attempt >= 20 {
			return Execution{}, fmt.Errorf("updating exec %s: %w", execID, err)
		}
	}
}

func cancelPending(x *Execution, reason string) int {
	n := 0
	for i := range x.Waves {
		if x.Waves[i].State == WavePending {
			x.Waves[i].State = WaveCancelled
			x.Waves[i].Reason = reason
			n++
		}
	}
	return n
}

// Cancel marks every pending wave of the execution cancelled; waves
// already published are not touched (see Kill). It returns how many waves
// were cancelled.
func (e *Executor) Cancel(ctx context.Context, execID, reason string) (int, error) {
	if reason == "" {
		reason = "cancelled"
	}
	n := 0
	_, err := e.modify(ctx, execID, func(x *Execution) bool {
		n = cancelPending(x, reason)
		return n > 0
	})
	return n, err
}

// Kill publishes kill.<exec_id> (agents running the execution kill the
// process tree and stop retries) and cancels the execution's pending waves.
// An exec_id without a record (an ad hoc run) is only killed.
func (e *Executor) Kill(ctx context.Context, execID string) error {
	if err := wire.CheckToken("exec_id", execID); err != nil {
		return err
	}
	var errs []error
	if err := e.Client.NC.Publish(wire.SubjectKill(execID), nil); err != nil {
		errs = append(errs, fmt.Errorf("publishing kill: %w", err))
	} else if err := e.Client.NC.FlushWithContext(ctx); err != nil {
		errs = append(errs, fmt.Errorf("publishing kill: %w", err))
	}
	if _, err := e.Cancel(ctx, execID, "killed"); err != nil && !errors.Is(err, ErrNotFound) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Revoke marks the job REVOKED in script_status: agents refuse to start it
// (exit 126) from their next check on.
func (e *Executor) Revoke(ctx context.Context, jobID string) error {
	return e.setStatus(ctx, jobID, wire.ScriptRevoked)
}

// Unrevoke marks the job ACTIVE again in script_status.
func (e *Executor) Unrevoke(ctx context.Context, jobID string) error {
	return e.setStatus(ctx, jobID, wire.ScriptActive)
}

func (e *Executor) setStatus(ctx context.Context, jobID, status string) error {
	if err := CheckID("job id", jobID); err != nil {
		return err
	}
	if _, err := e.status.Put(ctx, jobID, []byte(status)); err != nil {
		return fmt.Errorf("%s/%s = %s: %w", wire.BucketScriptStatus, jobID, status, err)
	}
	return nil
}

// Run publishes later waves when they are due, until ctx ends. It watches
// exec_plans (the watch replays every stored record first, which is how
// pending waves are reloaded after a restart), sleeps on a timer until the
// next due wave, and before publishing wave n > 0 asks Counter for the
// execution's failure rate: above stop_if_failed_pct, that wave and the
// later ones are marked stopped. Waves are claimed with compare-and-set, so
// several executors (replicas) never publish the same wave twice.
func (e *Executor) Run(ctx context.Context) error {
	for {
		w, err := e.plans.WatchAll(ctx)
		if err == nil {
			e.runWatch(ctx, w)
			_ = w.Stop()
		} else if ctx.Err() == nil {
			e.log().Warn("exec: watching exec_plans failed; retrying", "err", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		t := e.clk().NewTimer(e.retryDelay())
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

func (e *Executor) runWatch(ctx context.Context, w jetstream.KeyWatcher) {
	cache := map[string]Execution{}
	ready := false
	// apply takes one watch update; false means the watch ended.
	apply := func(ent jetstream.KeyValueEntry, ok bool) bool {
		switch {
		case !ok:
			return false
		case ent == nil:
			ready = true
		case ent.Operation() != jetstream.KeyValuePut:
			delete(cache, ent.Key())
		default:
			if old, ok := cache[ent.Key()]; ok && old.Revision >= ent.Revision() {
				return true
			}
			x, err := decodeExecution(ent)
			if err != nil {
				e.log().Warn("exec: ignoring an unreadable record", "key", ent.Key(), "err", err)
				delete(cache, ent.Key())
				return true
			}
			if x.finished() {
				delete(cache, ent.Key())
			} else {
				cache[ent.Key()] = x
			}
		}
		return true
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
		select {
		case <-ctx.Done():
			return
		case ent, ok := <-w.Updates():
			if !apply(ent, ok) {
				return
			}
		case <-timerC:
			timer = nil
		case <-e.kick:
		}
		// Take whatever else is queued: one step for a burst of updates.
	drain:
		for range 10_000 {
			select {
			case ent, ok := <-w.Updates():
				if !apply(ent, ok) {
					return
				}
			default:
				break drain
			}
		}
		if !ready {
			continue
		}
		next := e.step(ctx, cache)
		if timer != nil {
			timer.Stop()
			timer = nil
		}
		if !next.IsZero() {
			timer = e.clk().TimerAt(next)
		}
	}
}

func (x Execution) finished() bool {
	for _, w := range x.Waves {
		if !w.Done() {
			return false
		}
	}
	return true
}

// step acts on every due wave and returns when to look again (zero: only
// on the next change).
func (e *Executor) step(ctx context.Context, cache map[string]Execution) time.Time {
	var next time.Time
	later := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	ids := make([]string, 0, len(cache))
	for id := range cache {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		x := cache[id]
		if e.isInflight(id) {
			continue
		}
		at, err := e.advance(ctx, &x)
		if err != nil {
			if ctx.Err() != nil {
				return next
			}
			e.log().Warn("exec: wave not handled; retrying", "exec_id", id, "err", err)
			at = e.clk().Now().Add(e.retryDelay())
		}
		if x.finished() {
			delete(cache, id)
		} else {
			cache[id] = x
		}
		if !at.IsZero() {
			later(at)
		}
	}
	return next
}

// advance handles the first unfinished wave of x if it is due, updating x
// with the stored result. It returns when x needs attention next.
func (e *Executor) advance(ctx context.Context, x *Execution) (time.Time, error) {
	now := e.clk().Now()
	i := slices.IndexFunc(x.Waves, func(w WaveState) bool { return !w.Done() })
	if i < 0 {
		return time.Time{}, nil
	}
	w := x.Waves[i]
	switch w.State {
	case WavePublishing:
		var at time.Time
		if w.ClaimedBy == e.id {
			at = w.RetryAt
		} else {
			at = w.ClaimedAt.Add(e.claimTimeout())
		}
		if now.Before(at) {
			return at, nil
		}
		claimed, err := e.modify(ctx, x.ExecID, func(c *Execution) bool {
			cw := &c.Waves[i]
			if cw.State != WavePublishing || cw.ClaimedBy != w.ClaimedBy || !cw.ClaimedAt.Equal(w.ClaimedAt) {
				return false
			}
			if cw.ClaimedBy != e.id {
				e.log().Warn("exec: taking over a wave left unpublished", "exec_id", c.ExecID, "wave", i, "claimed_by", cw.ClaimedBy, "claimed_at", cw.ClaimedAt)
			}
			e.claim(cw, c.Plan, e.now())
			return true
		})
		if err != nil {
			return time.Time{}, err
		}
		*x = claimed
		if claimed.Waves[i].State != WavePublishing || claimed.Waves[i].ClaimedBy != e.id {
			return now, nil // changed meanwhile: look again
		}
		out, perr, rerr := e.publishWave(ctx, claimed, i)
		*x = out
		if err := errors.Join(perr, rerr); err != nil {
			return time.Time{}, err
		}
		return now, nil
	case WavePending:
		if now.Before(w.DueAt) {
			return w.DueAt, nil
		}
		if i > 0 && e.Counter != nil && x.Plan.Rollout != nil {
			total, failed, err := e.Counter.Counts(ctx, x.ExecID)
			if err != nil {
				return time.Time{}, fmt.Errorf("counting results: %w", err)
			}
			pct := x.Plan.Rollout.StopIfFailedPct
			if total > 0 && float64(failed)*100 > pct*float64(total) {
				reason := fmt.Sprintf("%d of %d results so far failed (%.1f%%), more than stop_if_failed_pct %g%%", failed, total, float64(failed)*100/float64(total), pct)
				stopped, err := e.modify(ctx, x.ExecID, func(c *Execution) bool {
					if c.Waves[i].State != WavePending {
						return false
					}
					for k := i; k < len(c.Waves); k++ {
						if c.Waves[k].State == WavePending {
							c.Waves[k].State = WaveStopped
							c.Waves[k].Reason = reason
						}
					}
					return true
				})
				if err != nil {
					return time.Time{}, err
				}
				e.log().Warn("exec: rollout stopped", "exec_id", x.ExecID, "wave", i, "reason", reason)
				*x = stopped
				return time.Time{}, nil
			}
		}
		claimed, err := e.modify(ctx, x.ExecID, func(c *Execution) bool {
			if c.Waves[i].State != WavePending {
				return false
			}
			e.claim(&c.Waves[i], c.Plan, e.now())
			return true
		})
		if err != nil {
			return time.Time{}, err
		}
		*x = claimed
		if claimed.Waves[i].State != WavePublishing || claimed.Waves[i].ClaimedBy != e.id {
			return now, nil
		}
		out, perr, rerr := e.publishWave(ctx, claimed, i)
		*x = out
		if err := errors.Join(perr, rerr); err != nil {
			return time.Time{}, err
		}
		e.log().Info("exec: wave published", "exec_id", x.ExecID, "wave", i, "group", w.Group)
		return now, nil
	}
	return time.Time{}, nil
}
