// Package configsync keeps an agent's view of its fleet configuration (KV
// agent_config) and group membership (KV agent_groups) current, and hands
// every change to the agent's subsystems through one watchable State.
//
// How it reads, and why:
//   - Values are read with direct last-message gets on the buckets' streams,
//     never with KV watches: a watch is a server-side consumer, and 10,000
//     agents × 2 buckets would be 20,000 consumers re-created in every
//     reconnect storm. Changes are learnt from plain core subscriptions on
//     exactly the agent's own keys ($KV.agent_config.global, .pcs.<me>,
//     .groups.<g> for its groups, $KV.agent_groups.<me>); a notification
//     only triggers a fresh get of that key.
//   - After every (re)connection, and every Resync as a safety net, a full
//     read of all relevant keys is made; its result is applied only if every
//     read succeeded, so a transient error is never "no groups" or "no
//     config".
//   - Each key carries a revision mark (the stream sequence of the value
//     applied); anything at or below it is dropped, so a lagging replica or
//     an out-of-order answer can never bring back an older target_version.
//     A recreated bucket (new stream creation time) resets the marks.
//   - A value that does not decode is logged, reported, and ignored; the
//     layer keeps its previous value.
package configsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/connstate"
	"github.com/kanade-project/kanade/internal/fleetconfig"
	"github.com/kanade-project/kanade/internal/retry"
	"github.com/kanade-project/kanade/internal/watchable"
	"github.com/kanade-project/kanade/internal/wire"
)

// Options configure a Supervisor.
type Options struct {
	PCID     string
	NC       *nats.Conn
	JS       jetstream.JetStream
	Link     *connstate.Tracker
	Logger   *slog.Logger
	Retry    retry.Policy
	Defaults wire.EffectiveConfig
	// Resync is the period of the safety-net full read; default 15 min
	// (±25 %).
	Resync time.Duration
}

// State is what the agent believes.
type State struct {
	// Synced is false until one full read succeeded.
	Synced     bool
	Resolution fleetconfig.Resolution
	Groups     []string
	// Revisions maps "<bucket>/<key>" to the revision applied.
	Revisions map[string]uint64
	// SyncError is the last failed read (empty after a success).
	SyncError string
}

// Supervisor owns the agent's config state. Create with New, then Run.
type Supervisor struct {
	o     Options
	log   *slog.Logger
	state watchable.Value[State]

	mu        sync.Mutex
	syncError string
	dirty     map[string]notice // keys notified since the last look
	wake      chan struct{}
	subs      map[string]*nats.Subscription
	synced    bool

	// Owned by the Run goroutine.
	streams     map[string]*bucketStream // by bucket
	prevCreated map[string]time.Time     // creation time of a forgotten stream
	marks       map[string]uint64        // "<bucket>/<key>"
	layers      map[string]fleetconfig.Layer
	groups      []string
	badKeys     map[string]wire.ConfigProblem // undecodable entries, by key
}

type bucketStream struct {
	s       jetstream.Stream
	created time.Time
}

const (
	bucketConfig = wire.BucketAgentConfig
	bucketGroups = wire.BucketAgentGroups
)

// New returns a Supervisor whose state is the defaults, not yet synced.
func New(o Options) *Supervisor {
	if o.Resync <= 0 {
		o.Resync = 15 * time.Minute
	}
	if o.Retry.Min <= 0 {
		o.Retry = retry.Default()
	}
	s := &Supervisor{
		o:           o,
		log:         o.Logger.With("component", "config"),
		dirty:       map[string]notice{},
		wake:        make(chan struct{}, 1),
		subs:        map[string]*nats.Subscription{},
		streams:     map[string]*bucketStream{},
		prevCreated: map[string]time.Time{},
		marks:       map[string]uint64{},
		layers:      map[string]fleetconfig.Layer{},
		badKeys:     map[string]wire.ConfigProblem{},
	}
	s.state.Set(State{Resolution: fleetconfig.Resolve(o.Defaults, nil, nil, nil), Revisions: map[string]uint64{}})
	return s
}

// State returns the current state and a channel closed at the next change.
func (s *Supervisor) State() (State, <-chan struct{}) { return s.state.Get() }

// Report is the answer to agents.<pc>.config.
func (s *Supervisor) Report() wire.ConfigReport {
	st, _ := s.state.Get()
	return wire.ConfigReport{
		PCID:      s.o.PCID,
		Effective: st.Resolution.Effective,
		Sources:   st.Resolution.Sources,
		Groups:    nonNil(st.Groups),
		Conflicts: st.Resolution.Conflicts,
		Problems:  st.Resolution.Problems,
		Synced:    st.Synced,
		SyncError: st.SyncError,
		Revisions: st.Revisions,
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Run keeps the state current until ctx ends.
func (s *Supervisor) Run(ctx context.Context) {
	defer s.unsubscribeAll()
	s.subscribe(subjectKey(bucketGroups, s.o.PCID))
	s.subscribe(subjectKey(bucketConfig, wire.ConfigKeyGlobal))
	if fleetconfig.CheckKeyToken("pc", s.o.PCID) == nil {
		s.subscribe(subjectKey(bucketConfig, wire.ConfigKeyPC(s.o.PCID)))
	} else {
		s.log.Warn("this pc_id cannot be a KV key: per-PC config and groups cannot address it", "pc_id", s.o.PCID)
	}

	resync := time.NewTimer(0) // the first full read happens at once
	defer resync.Stop()
	failures := 0
	needFull := true
	for {
		reconnected := s.o.Link.Reconnected()
		if needFull && s.o.Link.Connected() {
			if err := s.fullRead(ctx); err != nil {
				s.setSyncError(err)
				failures++
				d := s.o.Retry.Delay(failures)
				s.log.Warn("config read failed; keeping the current config", "err", err, "retry_in", d.Round(time.Millisecond))
				resetTimer(resync, d)
			} else {
				failures = 0
				needFull = false
				resetTimer(resync, jitter(s.o.Resync))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-reconnected:
			// Notifications sent while the link was down are lost.
			needFull = true
		case <-resync.C:
			needFull = true
		case <-s.wake:
			if needFull {
				// The last full read failed and its retry is backed off,
				// possibly by minutes. A change notice says the buckets
				// are being written again (recreated after a loss, say):
				// read now instead of leaving the agent on old config.
				continue
			}
			if s.o.Link.Connected() {
				if err := s.applyNotified(ctx); err != nil {
					s.log.Warn("applying a config change failed; a full read follows", "err", err)
					needFull = true
				}
			}
		}
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}

func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.75 + rand.Float64()*0.5))
}

// subjectKey is the core subject a KV put of bucket/key is published on.
func subjectKey(bucket, key string) string { return "$KV." + bucket + "." + key }

func (s *Supervisor) subscribe(subject string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.subs[subject]; ok {
		return
	}
	sub, err := s.o.NC.Subscribe(subject, func(m *nats.Msg) {
		s.notified(m.Subject, notice{data: m.Data, deleted: isDelete(m.Header.Get("KV-Operation"))})
	})
	if err != nil {
		s.log.Warn("cannot subscribe to config changes", "subject", subject, "err", err)
		return
	}
	s.subs[subject] = sub
}

func (s *Supervisor) unsubscribe(subject string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub, ok := s.subs[subject]; ok {
		_ = sub.Unsubscribe()
		delete(s.subs, subject)
	}
}

func (s *Supervisor) unsubscribeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, sub := range s.subs {
		_ = sub.Unsubscribe()
		delete(s.subs, k)
	}
}

// notice is what a core notification carried: the newest value at the
// time of the write, but without its revision.
type notice struct {
	data    []byte
	deleted bool
}

func isDelete(op string) bool { return op == "DEL" || op == "PURGE" }

func (s *Supervisor) notified(subject string, n notice) {
	s.mu.Lock()
	s.dirty[subject] = n
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// applyNotified re-reads every key that was notified.
func (s *Supervisor) applyNotified(ctx context.Context) error {
	s.mu.Lock()
	dirty := s.dirty
	s.dirty = map[string]notice{}
	s.mu.Unlock()
	for subj, n := range dirty {
		rest := strings.TrimPrefix(subj, "$KV.")
		bucket, key, ok := strings.Cut(rest, ".")
		if !ok {
			continue
		}
		r, err := s.getNoticed(ctx, bucket, key, n)
		if err != nil {
			return err
		}
		s.apply(r)
		if bucket == bucketGroups {
			// New groups bring new layers to read.
			if err := s.readGroupLayers(ctx); err != nil {
				return err
			}
		}
	}
	s.publish()
	return nil
}

// fullRead reads every relevant key and applies the lot only if all reads
// succeeded.
func (s *Supervisor) fullRead(ctx context.Context) error {
	// Re-read the streams' info: a bucket deleted and recreated (revisions
	// starting again from 1) is only visible in its creation time, and
	// with the old marks every new value would be dropped as stale.
	for _, b := range []string{bucketGroups, bucketConfig} {
		s.forgetStream(b)
	}
	var reads []read
	g, err := s.get(ctx, bucketGroups, s.o.PCID)
	if err != nil {
		return err
	}
	reads = append(reads, g)
	groups := s.groups
	if gs, ok := s.peekGroups(g); ok {
		groups = gs
	}
	keys := []string{wire.ConfigKeyGlobal, wire.ConfigKeyPC(s.o.PCID)}
	for _, grp := range groups {
		// Subscribe before the read: a layer written between the read and
		// a later subscription would be missed until the next resync
		// (minutes). The SUB goes out on this connection ahead of the
		// get, so the server holds it before it answers the read.
		s.subscribe(subjectKey(bucketConfig, wire.ConfigKeyGroup(grp)))
		keys = append(keys, wire.ConfigKeyGroup(grp))
	}
	for _, k := range keys {
		r, err := s.get(ctx, bucketConfig, k)
		if err != nil {
			return err
		}
		reads = append(reads, r)
	}
	for _, r := range reads {
		s.apply(r)
	}
	s.mu.Lock()
	s.synced = true
	s.syncError = ""
	s.mu.Unlock()
	s.publish()
	return nil
}

func (s *Supervisor) setSyncError(err error) {
	s.mu.Lock()
	s.syncError = err.Error()
	s.mu.Unlock()
	s.publish()
}

// readGroupLayers fetches the layers of groups not read yet.
func (s *Supervisor) readGroupLayers(ctx context.Context) error {
	for _, grp := range s.groups {
		k := wire.ConfigKeyGroup(grp)
		if _, seen := s.marks[bucketConfig+"/"+k]; seen {
			continue
		}
		r, err := s.get(ctx, bucketConfig, k)
		if err != nil {
			return err
		}
		s.apply(r)
	}
	return nil
}

// getNoticed reads a key after a notification. Core subscribers see a KV
// write before the stream has stored it, so an immediate get may still
// return the previous revision: retry until the get shows the noticed
// value or something newer than what is applied. A loaded broker can take
// more than a second to store it; after noticedPatience the read is an
// error, so that a full read follows rather than the change being dropped
// until the next resync (minutes).
func (s *Supervisor) getNoticed(ctx context.Context, bucket, key string, n notice) (read, error) {
	mark := s.marks[bucket+"/"+key]
	delay := 5 * time.Millisecond
	deadline := time.Now().Add(noticedPatience)
	for {
		r, err := s.get(ctx, bucket, key)
		if err != nil {
			return r, err
		}
		same := r.found && r.deleted == n.deleted && (n.deleted || bytes.Equal(r.data, n.data))
		if same || r.rev > mark {
			return r, nil
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("%s/%s: notified of a change the stream still does not show after %s", bucket, key, noticedPatience)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return r, ctx.Err()
		case <-t.C:
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
}

// noticedPatience is how long getNoticed waits for the stream to show a
// noticed change.
const noticedPatience = 5 * time.Second

// read is the outcome of one get.
type read struct {
	bucket, key string
	found       bool
	rev         uint64
	deleted     bool
	data        []byte
}

func (s *Supervisor) get(ctx context.Context, bucket, key string) (read, error) {
	r := read{bucket: bucket, key: key}
	bs, err := s.stream(ctx, bucket)
	if err != nil {
		return r, err
	}
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := bs.s.GetLastMsgForSubject(c, subjectKey(bucket, key))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return r, nil
	case err != nil:
		// A deleted stream answers direct gets with "no responders", not
		// "not found": any error drops the handle, so the next read looks
		// the stream up again.
		s.forgetStream(bucket)
		return r, fmt.Errorf("%s/%s: %w", bucket, key, err)
	}
	r.found, r.rev, r.data = true, m.Sequence, m.Data
	switch m.Header.Get("KV-Operation") {
	case "DEL", "PURGE":
		r.deleted = true
	}
	return r, nil
}

// stream returns the bucket's stream handle, acquiring it when needed. A
// bucket that was recreated since it was last seen resets the revision
// marks of that bucket: its revisions started again from 1.
func (s *Supervisor) stream(ctx context.Context, bucket string) (*bucketStream, error) {
	if bs, ok := s.streams[bucket]; ok {
		return bs, nil
	}
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := s.o.JS.Stream(c, "KV_"+bucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", bucket, err)
	}
	bs := &bucketStream{s: st, created: st.CachedInfo().Created}
	if prev, ok := s.prevCreated[bucket]; ok && !prev.Equal(bs.created) {
		s.log.Info("bucket was recreated; starting its revisions afresh", "bucket", bucket)
		for k := range s.marks {
			if strings.HasPrefix(k, bucket+"/") {
				delete(s.marks, k)
			}
		}
	}
	s.streams[bucket] = bs
	return bs, nil
}

func (s *Supervisor) forgetStream(bucket string) {
	if bs, ok := s.streams[bucket]; ok {
		s.prevCreated[bucket] = bs.created
		delete(s.streams, bucket)
	}
}

// peekGroups decodes a groups read without applying it.
func (s *Supervisor) peekGroups(r read) ([]string, bool) {
	if r.rev != 0 && r.rev <= s.marks[bucketGroups+"/"+r.key] {
		return nil, false
	}
	if !r.found || r.deleted {
		if !r.found && s.marks[bucketGroups+"/"+r.key] != 0 {
			return nil, false
		}
		return nil, true
	}
	gs, _, err := fleetconfig.ParseGroups(r.data)
	if err != nil {
		return nil, false
	}
	return gs, true
}

// apply records one read, honouring the revision mark.
func (s *Supervisor) apply(r read) {
	markKey := r.bucket + "/" + r.key
	mark := s.marks[markKey]
	if !r.found {
		// Never seen: nothing to do. Seen before: a lagging replica or a
		// recreated bucket without the key; keep what we have.
		return
	}
	if r.rev <= mark {
		s.log.Debug("dropping a value at or below the applied revision", "key", markKey, "rev", r.rev, "mark", mark)
		return
	}
	s.marks[markKey] = r.rev
	delete(s.badKeys, markKey)
	switch r.bucket {
	case bucketGroups:
		var gs []string
		if !r.deleted {
			var bad []string
			var err error
			gs, bad, err = fleetconfig.ParseGroups(r.data)
			if err != nil {
				s.log.Warn("ignoring an undecodable agent_groups value; keeping the current groups", "rev", r.rev, "err", err)
				s.badKeys[markKey] = wire.ConfigProblem{Layer: "agent_groups/" + r.key, Message: err.Error() + "; keeping the current groups"}
				return
			}
			for _, b := range bad {
				s.log.Warn("ignoring an invalid group name", "err", b)
			}
		}
		s.setGroups(gs)
	case bucketConfig:
		name := layerName(r.key)
		if r.deleted {
			delete(s.layers, r.key)
			return
		}
		l, err := fleetconfig.ParseLayer(name, r.data)
		if err != nil {
			s.log.Warn("ignoring an undecodable config layer; keeping its previous value", "key", r.key, "rev", r.rev, "err", err)
			s.badKeys[markKey] = wire.ConfigProblem{Layer: name, Message: err.Error() + "; keeping the previous value"}
			return
		}
		s.layers[r.key] = l
	}
}

func layerName(key string) string {
	switch {
	case key == wire.ConfigKeyGlobal:
		return "global"
	case strings.HasPrefix(key, "groups."):
		return "group:" + strings.TrimPrefix(key, "groups.")
	}
	return "pc"
}

// setGroups updates membership and the subscriptions to group layers.
func (s *Supervisor) setGroups(gs []string) {
	old := s.groups
	s.groups = gs
	for _, g := range old {
		if !slices.Contains(gs, g) {
			s.unsubscribe(subjectKey(bucketConfig, wire.ConfigKeyGroup(g)))
			delete(s.layers, wire.ConfigKeyGroup(g))
			delete(s.marks, bucketConfig+"/"+wire.ConfigKeyGroup(g))
		}
	}
	for _, g := range gs {
		s.subscribe(subjectKey(bucketConfig, wire.ConfigKeyGroup(g)))
	}
}

// publish resolves the layers and hands out a new State if anything a
// consumer can see changed.
func (s *Supervisor) publish() {
	var global, pc *fleetconfig.Layer
	if l, ok := s.layers[wire.ConfigKeyGlobal]; ok {
		global = &l
	}
	if l, ok := s.layers[wire.ConfigKeyPC(s.o.PCID)]; ok {
		pc = &l
	}
	var groups []fleetconfig.Layer
	for _, g := range s.groups {
		if l, ok := s.layers[wire.ConfigKeyGroup(g)]; ok {
			groups = append(groups, l)
		}
	}
	res := fleetconfig.Resolve(s.o.Defaults, global, groups, pc)
	for _, k := range slices.Sorted(maps.Keys(s.badKeys)) {
		res.Problems = append(res.Problems, s.badKeys[k])
	}
	for _, c := range res.Conflicts {
		s.log.Warn("config field set by several groups; the last in alphabetical order wins", "field", c.Field, "groups", c.Groups, "winner", c.Winner)
	}
	s.mu.Lock()
	synced, syncErr := s.synced, s.syncError
	s.mu.Unlock()
	next := State{Synced: synced, SyncError: syncErr, Resolution: res, Groups: slices.Clone(s.groups), Revisions: maps.Clone(s.marks)}
	cur, _ := s.state.Get()
	if reflect.DeepEqual(cur, next) {
		return
	}
	if !reflect.DeepEqual(cur.Resolution.Effective, next.Resolution.Effective) || !slices.Equal(cur.Groups, next.Groups) {
		s.log.Info("config applied", "effective", fmt.Sprintf("%+v", next.Resolution.Effective), "groups", next.Groups)
	}
	s.state.Set(next)
}
