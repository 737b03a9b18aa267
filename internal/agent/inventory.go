package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-project/kanade/internal/atomicfile"
	"github.com/kanade-project/kanade/internal/hostperf"
	"github.com/kanade-project/kanade/internal/outbox"
	"github.com/kanade-project/kanade/internal/wire"
)

// inventoryState remembers, per section, the hash of the last full
// section the broker acknowledged (persisted, so an agent restart does not
// resend everything) and of the one queued but not yet acknowledged.
type inventoryState struct {
	path    string
	mu      sync.Mutex
	Acked   map[string]string `json:"acked"`
	pending map[string]string
	trigger chan struct{}
}

func newInventoryState(dataDir string) *inventoryState {
	s := &inventoryState{path: filepath.Join(dataDir, "inventory.json"), Acked: map[string]string{}, pending: map[string]string{}, trigger: make(chan struct{}, 1)}
	if b, err := readFileIfExists(s.path); err == nil && b != nil {
		_ = json.Unmarshal(b, s)
		if s.Acked == nil {
			s.Acked = map[string]string{}
		}
	}
	return s
}

// acked records a delivered full section.
func (s *inventoryState) acked(section, hash string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Acked[section] = hash
	if s.pending[section] == hash {
		delete(s.pending, section)
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return atomicfile.Write(s.path, b)
}

// requestRun asks the loop for an immediate collection.
func (s *inventoryState) requestRun() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// inventoryLoop collects on the configured cadence: the first run after a
// random delay within inventory_jitter (a fleet booting together must not
// collect together), then every inventory_interval; a config change
// re-arms the timer at once, and a refresh request runs now.
func (a *Agent) inventoryLoop(ctx context.Context) {
	var last time.Time
	start := time.Now()
	var firstDelay time.Duration
	chosenFor := time.Duration(-1)
	for {
		st, changed := a.cfgsync.State()
		e := st.Resolution.Effective
		var due <-chan time.Time
		var timer *time.Timer
		if e.InventoryEnabled {
			var at time.Time
			if last.IsZero() {
				if j := e.InventoryJitter.D(); j != chosenFor {
					chosenFor = j
					firstDelay = 0
					if j > 0 {
						firstDelay = rand.N(j)
					}
				}
				at = start.Add(firstDelay)
			} else {
				at = last.Add(e.InventoryInterval.D())
			}
			timer = time.NewTimer(max(time.Until(at), 0))
			due = timer.C
		}
		select {
		case <-ctx.Done():
			stopTimer(timer)
			return
		case <-changed:
			stopTimer(timer)
			continue
		case <-a.inv.trigger:
			stopTimer(timer)
		case <-due:
		}
		a.collectInventory(ctx)
		last = time.Now()
	}
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

// collectInventory gathers every section and queues what changed.
func (a *Agent) collectInventory(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	began := time.Now()
	c := a.cfg.Inventory
	sections := []struct {
		name string
		get  func(context.Context) any
	}{
		{wire.SectionHardware, func(ctx context.Context) any { return c.Hardware(ctx) }},
		{wire.SectionOS, func(ctx context.Context) any { return c.OS(ctx) }},
		{wire.SectionNetwork, func(ctx context.Context) any { return c.Network(ctx) }},
		{wire.SectionSoftware, func(ctx context.Context) any { return c.Software(ctx) }},
	}
	sent, same := 0, 0
	for _, s := range sections {
		if ctx.Err() != nil {
			return
		}
		data, err := json.Marshal(s.get(ctx))
		if err != nil {
			a.log.Error("encoding inventory", "section", s.name, "err", err)
			continue
		}
		sum := sha256.Sum256(data)
		hash := hex.EncodeToString(sum[:])
		msg := wire.InventoryMessage{PCID: a.cfg.ID, Section: s.name, CollectedAt: time.Now().UTC(), Hash: hash}
		a.inv.mu.Lock()
		unchanged := a.inv.Acked[s.name] == hash
		queued := a.inv.pending[s.name] == hash
		if !unchanged && !queued {
			a.inv.pending[s.name] = hash
		}
		a.inv.mu.Unlock()
		kind, ref := "inventory-marker", ""
		switch {
		case unchanged:
			msg.Unchanged = true
			same++
		case queued:
			continue // the same content is already waiting in the outbox
		default:
			msg.Data = data
			kind, ref = "inventory", s.name+":"+hash
			sent++
		}
		b, err := json.Marshal(msg)
		if err != nil {
			continue
		}
		a.enqueueRetrying(outbox.Entry{
			Kind: kind, Ref: ref, Subject: wire.SubjectInventory(a.cfg.ID, s.name),
			MsgID: fmt.Sprintf("inv-%s-%s-%s-%d", a.cfg.ID, s.name, hash[:16], msg.CollectedAt.UnixNano()), Data: b,
		})
	}
	a.log.Info("inventory collected", "changed_sections", sent, "unchanged_sections", same, "took", time.Since(began).Round(time.Millisecond))
	// Collection is the agent's largest transient allocation (package
	// lists, their JSON). Hand it back to the OS now rather than when the
	// runtime's background scavenger gets to it: an idle agent would
	// otherwise sit about 2 MiB above its working set for minutes. One
	// forced GC per inventory interval (hours) costs nothing measurable.
	debug.FreeOSMemory()
}

// onInventorySent records a delivered full section.
func (a *Agent) onInventorySent(e outbox.Entry) error {
	section, hash, ok := strings.Cut(e.Ref, ":")
	if !ok {
		return nil
	}
	return a.inv.acked(section, hash)
}

// onInventoryRefresh answers a refresh request and triggers a run.
func (a *Agent) onInventoryRefresh(m *nats.Msg) {
	a.inv.requestRun()
	if m.Reply != "" {
		_ = m.Respond([]byte(fmt.Sprintf(`{"pc_id":%q,"queued":true}`, a.cfg.ID)))
	}
}

// hostPerfLoop publishes host_perf.<pc> every host_perf_interval (core
// NATS: a sample is only worth its freshness).
func (a *Agent) hostPerfLoop(ctx context.Context) {
	var s hostperf.Sampler
	_, _ = s.Sample(a.cfg.ID) // prime the rates
	last := time.Now()
	for {
		st, changed := a.cfgsync.State()
		t := time.NewTimer(max(time.Until(last.Add(st.Resolution.Effective.HostPerfInterval.D())), 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-changed:
			t.Stop()
			continue
		case <-t.C:
		}
		last = time.Now()
		hp, err := s.Sample(a.cfg.ID)
		if err != nil {
			a.log.Debug("host perf sample failed", "err", err)
			continue
		}
		if b, err := json.Marshal(hp); err == nil {
			_ = a.nc.Publish(wire.SubjectHostPerf(a.cfg.ID), b)
		}
	}
}
