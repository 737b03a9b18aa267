package agent

import (
	"context"
	"encoding/json"
	"runtime"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-project/kanade/internal/hostinfo"
	"github.com/kanade-project/kanade/internal/procstat"
	"github.com/kanade-project/kanade/internal/wire"
)

// heartbeats builds Heartbeat messages; the periodic loop and ping replies
// share one CPU sampler, so the mutex keeps their samples consistent.
type heartbeats struct {
	a        *Agent
	hostname string
	machine  string

	mu      sync.Mutex
	sampler procstat.Sampler
}

func newHeartbeats(a *Agent) *heartbeats {
	return &heartbeats{a: a, hostname: hostinfo.Hostname(), machine: hostinfo.MachineID()}
}

func (h *heartbeats) build() wire.Heartbeat {
	hb := wire.Heartbeat{
		PCID:         h.a.cfg.ID,
		At:           time.Now().UTC(),
		AgentVersion: h.a.cfg.Version,
		Hostname:     h.hostname,
		OSFamily:     hostinfo.OSFamily(),
		Arch:         runtime.GOARCH,
		MachineID:    h.machine,
		OutboxDepth:  h.a.outbox.Depth(),
		Groups:       h.a.gsubs.groups(),

		CommandKeyFingerprints: h.a.verify.fingerprints(),
		CommandSigning:         h.a.verify.mode(),
	}
	if d, _ := h.interval(); d > 0 {
		hb.HeartbeatIntervalSecs = int((d + time.Second - 1) / time.Second)
	}
	if h.a.updater != nil {
		hb.QuarantinedVersions = h.a.updater.Quarantined()
	}
	h.mu.Lock()
	rss, cpu, err := h.sampler.Sample()
	h.mu.Unlock()
	if err == nil {
		hb.AgentRSSBytes, hb.AgentCPUPct = rss, cpu
	}
	return hb
}

func (h *heartbeats) publish() {
	b, err := json.Marshal(h.build())
	if err != nil {
		h.a.log.Error("encoding heartbeat", "err", err)
		return
	}
	// Core publish: a heartbeat is only worth its freshness. While
	// disconnected it is refused (no reconnect buffer) and the loop sends
	// a fresh one on the reconnection instead.
	if err := h.a.nc.Publish(wire.SubjectHeartbeat(h.a.cfg.ID), b); err != nil {
		h.a.log.Debug("heartbeat not sent", "err", err)
	}
}

// loop publishes a heartbeat at once, then every heartbeat_interval and
// at every (re)connection, until ctx ends; a new interval from the fleet
// config takes effect at once (the next beat is due one new interval after
// the last one). The beat on reconnection matters twice: the one sent
// before the first connection was refused, and after a broker restart the
// backend learns at once who is back instead of one interval later.
// Reconnections are already spread by the client's jittered backoff, so
// these beats arrive spread too.
func (h *heartbeats) loop(ctx context.Context) {
	reconnected := h.a.link.Reconnected()
	h.publish()
	last := time.Now()
	for {
		interval, changed := h.interval()
		t := time.NewTimer(max(time.Until(last.Add(interval)), 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-changed:
			t.Stop()
		case <-reconnected:
			t.Stop()
			reconnected = h.a.link.Reconnected()
			h.publish()
			last = time.Now()
		case <-t.C:
			h.publish()
			last = time.Now()
		}
	}
}

// interval is the configured cadence (the agent's own setting is the
// default layer of the fleet config).
func (h *heartbeats) interval() (time.Duration, <-chan struct{}) {
	st, changed := h.a.cfgsync.State()
	return st.Resolution.Effective.HeartbeatInterval.D(), changed
}

func (h *heartbeats) onPing(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	b, err := json.Marshal(h.build())
	if err != nil {
		return
	}
	_ = m.Respond(b)
}
