package projector

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-project/kanade/internal/retry"
	"github.com/kanade-project/kanade/internal/store"
	"github.com/kanade-project/kanade/internal/wire"
)

// runHeartbeats subscribes to heartbeat.> and flushes the newest heartbeat
// of each PC every HeartbeatFlush. A core subscription survives reconnects
// by itself (the client re-subscribes), so it is acquired once.
func (p *Projector) runHeartbeats(ctx context.Context) {
	sub, err := retry.Forever(ctx, p.o.Retry, p.log, "heartbeat subscription", p.o.Wake, func(context.Context) (*nats.Subscription, error) {
		sub, err := p.o.NC.Subscribe(wire.SubjectHeartbeatWild, p.onHeartbeat)
		if err != nil {
			return nil, err
		}
		// 10,000 agents reconnecting together send a burst: keep it
		// rather than drop it as a slow consumer.
		if err := sub.SetPendingLimits(-1, 256<<20); err != nil {
			sub.Unsubscribe()
			return nil, err
		}
		return sub, nil
	})
	if err != nil {
		return // ctx ended
	}
	t := time.NewTicker(p.o.HeartbeatFlush)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			sub.Unsubscribe()
			// Keep what was received: one last flush.
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := p.FlushHeartbeats(fctx); err != nil {
				p.log.Warn("projector: final heartbeat flush failed", "err", err)
			}
			cancel()
			return
		case <-t.C:
			if _, err := p.FlushHeartbeats(ctx); err != nil && ctx.Err() == nil {
				p.log.Warn("projector: heartbeat flush failed; keeping them for the next one", "err", err)
			}
		}
	}
}

// onHeartbeat keeps the newest (last received) heartbeat of each PC. The
// PC is the subject's token: NATS permissions bind an agent's credentials to
// its subjects, not to what it writes in a payload; a payload naming another
// PC is refused.
func (p *Projector) onHeartbeat(m *nats.Msg) {
	pc, ok := wire.PCFromSubject(m.Subject, "heartbeat")
	var hb wire.Heartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil || !ok {
		p.hbStats.decodeErrors.Add(1)
		p.log.Debug("projector: undecodable heartbeat", "subject", m.Subject, "err", err)
		return
	}
	if err := bindPC(pc, &hb.PCID); err != nil {
		p.hbStats.forged.Add(1)
		p.log.Warn("projector: refused a heartbeat whose payload names another PC than its subject",
			"security", true, "subject", m.Subject, "subject_pc", pc, "payload_pc", hb.PCID)
		return
	}
	seen := store.Heartbeat{Heartbeat: hb, SeenAt: time.Now().UTC()}
	p.hbMu.Lock()
	p.hbPending[pc] = seen
	p.hbMu.Unlock()
	p.hbStats.received.Add(1)
}

// FlushHeartbeats writes the heartbeats received since the last flush, one
// per PC, in one transaction, and returns how many PCs it wrote. On failure
// they are kept for the next flush (unless a newer one arrived meanwhile).
func (p *Projector) FlushHeartbeats(ctx context.Context) (int, error) {
	p.hbMu.Lock()
	pending := p.hbPending
	p.hbPending = make(map[string]store.Heartbeat, len(pending))
	p.hbMu.Unlock()
	if len(pending) == 0 {
		return 0, nil
	}
	list := make([]store.Heartbeat, 0, len(pending))
	var oldest time.Time
	for _, h := range pending {
		list = append(list, h)
		if oldest.IsZero() || h.SeenAt.Before(oldest) {
			oldest = h.SeenAt
		}
	}
	err := p.o.Store.Tx(ctx, func(tx *store.Tx) error { return tx.UpsertHeartbeats(list) })
	if err != nil {
		p.hbStats.flushErrors.Add(1)
		p.hbMu.Lock()
		for pc, h := range pending {
			if _, newer := p.hbPending[pc]; !newer {
				p.hbPending[pc] = h
			}
		}
		p.hbMu.Unlock()
		return 0, err
	}
	p.hbStats.flushed.Add(uint64(len(list)))
	p.hbStats.flushes.Add(1)
	// The age of the oldest heartbeat at commit is the flush's worst lag:
	// how stale "online" could be in SQLite. Receipt time, not the agent's
	// clock, so a PC with a wrong clock does not distort it.
	lag := int64(time.Since(oldest))
	p.hbStats.lastLag.Store(lag)
	for {
		cur := p.hbStats.maxLag.Load()
		if lag <= cur || p.hbStats.maxLag.CompareAndSwap(cur, lag) {
			break
		}
	}
	return len(list), nil
}
