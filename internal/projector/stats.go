package projector

import (
	"context"
	"time"
)

// Stats is a snapshot of the projectors' counters, ready for /metrics:
// counters only grow, gauges are marked as such.
type Stats struct {
	Streams    []StreamStats  `json:"streams"`
	Heartbeats HeartbeatStats `json:"heartbeats"`
	// Results counts the results committed to SQLite for the first time
	// since start, by class (store.Classify: succeeded, failed,
	// timed_out, ...): each result_id once, however often it is delivered.
	Results map[string]uint64 `json:"results"`
}

// StreamStats describes one stream's projector.
type StreamStats struct {
	Stream   string `json:"stream"`
	Consumer string `json:"consumer"`
	// Applied counts messages written to SQLite (redeliveries included).
	Applied uint64 `json:"applied"`
	// DecodeErrors counts messages that could not be decoded or lacked
	// their key fields; they were acked and skipped.
	DecodeErrors uint64 `json:"decode_errors"`
	// Ignored counts messages of kinds this version does not project.
	Ignored uint64 `json:"ignored"`
	// Forged counts messages refused because their payload pc_id
	// disagrees with their subject's pc (acked, never stored).
	Forged uint64 `json:"forged"`
	// Batches counts committed transactions; Applied+DecodeErrors+Ignored
	// divided by Batches is the mean batch size.
	Batches uint64 `json:"batches"`
	// ApplyErrors counts failed transactions (each retried).
	ApplyErrors uint64 `json:"apply_errors"`
	// LastBatch and MaxBatch are batch sizes in messages (gauges).
	LastBatch int `json:"last_batch"`
	MaxBatch  int `json:"max_batch"`

	// Lag (gauge) is the stream's last sequence minus the consumer's ack
	// floor: messages stored but not yet committed to SQLite. Refreshed
	// every LagInterval; LagKnown is false until the first reading.
	Lag           uint64    `json:"lag"`
	LagKnown      bool      `json:"lag_known"`
	LagAt         time.Time `json:"lag_at,omitzero"`
	StreamLastSeq uint64    `json:"stream_last_seq"`
	AckFloor      uint64    `json:"ack_floor"`
}

// HeartbeatStats describes the heartbeat projector.
type HeartbeatStats struct {
	Received     uint64 `json:"received"`
	DecodeErrors uint64 `json:"decode_errors"`
	// Forged counts heartbeats refused because their payload pc_id
	// disagrees with the subject's pc.
	Forged uint64 `json:"forged"`
	// Flushed counts agent rows written; Flushes the transactions.
	Flushed     uint64 `json:"flushed"`
	Flushes     uint64 `json:"flushes"`
	FlushErrors uint64 `json:"flush_errors"`
	// Pending (gauge) is the number of PCs waiting for the next flush.
	Pending int `json:"pending"`
	// LastLag (gauge) is, for the last flush, the time from the receipt of
	// its oldest heartbeat to the commit; MaxLag the largest since start.
	LastLag time.Duration `json:"last_lag_ns"`
	MaxLag  time.Duration `json:"max_lag_ns"`
}

// Stats returns a snapshot of the counters. Safe for concurrent use.
func (p *Projector) Stats() Stats {
	var st Stats
	for _, s := range p.streams {
		ss := StreamStats{
			Stream: s.stream, Consumer: s.consumer,
			Applied: s.applied.Load(), DecodeErrors: s.decodeErrors.Load(), Ignored: s.ignored.Load(), Forged: s.forged.Load(),
			Batches: s.batches.Load(), ApplyErrors: s.applyErrors.Load(),
			LastBatch: int(s.lastBatch.Load()), MaxBatch: int(s.maxBatch.Load()),
		}
		s.lagMu.Lock()
		ss.Lag, ss.LagKnown, ss.LagAt, ss.StreamLastSeq, ss.AckFloor = s.lag, s.lagKnown, s.lagAt, s.lastSeq, s.ackFloor
		s.lagMu.Unlock()
		st.Streams = append(st.Streams, ss)
	}
	st.Heartbeats = HeartbeatStats{
		Received: p.hbStats.received.Load(), DecodeErrors: p.hbStats.decodeErrors.Load(), Forged: p.hbStats.forged.Load(),
		Flushed: p.hbStats.flushed.Load(), Flushes: p.hbStats.flushes.Load(), FlushErrors: p.hbStats.flushErrors.Load(),
		LastLag: time.Duration(p.hbStats.lastLag.Load()), MaxLag: time.Duration(p.hbStats.maxLag.Load()),
	}
	p.hbMu.Lock()
	st.Heartbeats.Pending = len(p.hbPending)
	p.hbMu.Unlock()
	st.Results = p.results.snapshot()
	return st
}

// Stream returns one stream's stats (false when it is not projected).
func (st Stats) Stream(name string) (StreamStats, bool) {
	for _, s := range st.Streams {
		if s.Stream == name {
			return s, true
		}
	}
	return StreamStats{}, false
}

func (p *Projector) runLag(ctx context.Context) {
	t := time.NewTicker(p.o.LagInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.RefreshLag(ctx)
		}
	}
}

// RefreshLag reads every consumer's ack floor and its stream's last
// sequence now. Streams whose consumer does not exist yet are skipped.
func (p *Projector) RefreshLag(ctx context.Context) {
	for _, s := range p.streams {
		cp := s.cons.Load()
		if cp == nil {
			continue
		}
		ci, err := (*cp).Info(ctx)
		if err != nil {
			p.log.Debug("projector: consumer info", "consumer", s.consumer, "err", err)
			continue
		}
		si, err := p.o.JS.Stream(ctx, s.stream)
		if err != nil {
			p.log.Debug("projector: stream info", "stream", s.stream, "err", err)
			continue
		}
		state := si.CachedInfo().State
		floor := ci.AckFloor.Stream
		if state.FirstSeq > 0 && floor < state.FirstSeq-1 {
			floor = state.FirstSeq - 1 // older messages are gone: not lag
		}
		var lag uint64
		if state.LastSeq > floor {
			lag = state.LastSeq - floor
		}
		s.lagMu.Lock()
		s.lag, s.lagKnown, s.lagAt, s.lastSeq, s.ackFloor = lag, true, time.Now(), state.LastSeq, ci.AckFloor.Stream
		s.lagMu.Unlock()
	}
}
