// Package projector keeps the SQLite projection (internal/store) in step
// with JetStream (DESIGN.md §4).
//
// Each projected stream (RESULTS, EVENTS, OBS_EVENTS, INVENTORY, AUDIT) has
// one durable pull consumer, kanade_proj_<stream>. Messages are taken in
// batches (up to BatchSize, or whatever arrived within BatchWait of the
// first), the whole batch is applied in one SQLite transaction, and every
// message is acknowledged only after the commit. A crash between commit and
// ack means a redelivery, which the store's idempotent writes absorb; a
// crash before the commit loses nothing, because nothing was acked.
//
// Acks are explicit, one per message. AckAll on the last message of a batch
// would be cheaper, but it also acknowledges every older message still
// outstanding — including prefetched messages that a previous consumer
// instance received and never committed — so a restart could silently skip
// rows.
//
// A message that does not decode (or lacks its key fields) can never
// succeed: it is logged, counted and acked. So is a message whose payload
// pc_id disagrees with the pc token of its subject (results.<req>.<pc>,
// events.started.<exec>.<pc>, obs.<pc>, inventory.<pc>.<section>,
// heartbeat.<pc>): the subject is what NATS permissions bind to an agent's
// credential, so such a message is an impersonation attempt and is refused
// (logged with security=true, counted as Forged), never stored.
//
// When the store was just created (or an earlier start created it but did
// not get as far as resetting a consumer), that stream's durable consumer is
// deleted first, so it is recreated delivering from the start of the stream
// and the database is rebuilt by replay.
//
// Heartbeats are core NATS (heartbeat.>), not a stream: they are kept in
// memory, newest per PC, and flushed every HeartbeatFlush in one transaction.
package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/retry"
	"github.com/kanade-project/kanade/internal/store"
	"github.com/kanade-project/kanade/internal/wire"
)

// Options configure a Projector. JS and Store are required.
type Options struct {
	JS    jetstream.JetStream
	Store *store.Store
	// NC carries the heartbeat subscription; defaults to JS.Conn().
	NC     *nats.Conn
	Logger *slog.Logger

	// ConsumerPrefix names the durable consumers (default "kanade_proj_"):
	// <prefix><stream in lower case>. Each backend with its own database
	// needs its own prefix; two backends sharing a consumer would split
	// the messages between their databases.
	ConsumerPrefix string
	// Streams limits the projected streams (default: all five).
	Streams []string

	// BatchSize is the most messages applied in one transaction (500).
	BatchSize int
	// BatchWait is how long a batch keeps filling after its first message
	// (100 ms).
	BatchWait time.Duration
	// AckWait is the consumers' redelivery timeout (30 s): a message
	// delivered but not acked (the projector stopped, or its transaction
	// failed) is delivered again after it.
	AckWait time.Duration
	// HeartbeatFlush is the heartbeat batching period (500 ms); negative
	// disables the heartbeat subscription. Half a second, not one: a
	// heartbeat waits up to one period and then its commit (about 90 ms
	// for the 10,000 rows of a reconnect storm), and the agents table must
	// trail the fleet by less than a second (BenchmarkHeartbeatLag).
	HeartbeatFlush time.Duration
	// LagInterval is how often lag is read from the consumers (5 s).
	LagInterval time.Duration

	// Retry is the backoff for (re)creating consumers and retrying failed
	// transactions (retry.Default()).
	Retry retry.Policy
	// Wake, when set, cuts retry waits short (connstate's Reconnected).
	Wake func() <-chan struct{}
}

// Projector runs the projectors. Create with New, start with Run.
type Projector struct {
	o       Options
	log     *slog.Logger
	streams []*streamState

	// results counts committed results by class (Stats.Results).
	results resultCounts

	hbMu      sync.Mutex
	hbPending map[string]store.Heartbeat
	hbStats   struct {
		received, decodeErrors, forged, flushed, flushes, flushErrors atomic.Uint64
		// lastLag and maxLag are nanoseconds from the receipt of the
		// oldest heartbeat of a flush to its commit.
		lastLag, maxLag atomic.Int64
	}
}

// projection decodes one stream's messages into store writes.
type projection struct {
	stream string
	decode func(msg jetstream.Msg, meta *jetstream.MsgMetadata) (apply func(*store.Tx) error, err error)
}

var projections = map[string]projection{
	wire.StreamResults:   {wire.StreamResults, decodeResult},
	wire.StreamEvents:    {wire.StreamEvents, decodeEvent},
	wire.StreamObs:       {wire.StreamObs, decodeObs},
	wire.StreamInventory: {wire.StreamInventory, decodeInventory},
	wire.StreamAudit:     {wire.StreamAudit, decodeAudit},
}

// AllStreams lists the projected streams in their default order.
func AllStreams() []string {
	return []string{wire.StreamResults, wire.StreamEvents, wire.StreamObs, wire.StreamInventory, wire.StreamAudit}
}

type streamState struct {
	projection
	consumer string
	cons     atomic.Pointer[jetstream.Consumer]

	applied, decodeErrors, ignored, forged, batches, applyErrors atomic.Uint64
	lastBatch, maxBatch                                          atomic.Int64

	lagMu    sync.Mutex
	lag      uint64
	lastSeq  uint64
	ackFloor uint64
	lagAt    time.Time
	lagKnown bool
}

// New validates o and returns a Projector.
func New(o Options) (*Projector, error) {
	if o.JS == nil || o.Store == nil {
		return nil, errors.New("projector: JS and Store are required")
	}
	if o.NC == nil {
		o.NC = o.JS.Conn()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ConsumerPrefix == "" {
		o.ConsumerPrefix = "kanade_proj_"
	}
	if len(o.Streams) == 0 {
		o.Streams = AllStreams()
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.BatchWait <= 0 {
		o.BatchWait = 100 * time.Millisecond
	}
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
	if o.HeartbeatFlush == 0 {
		o.HeartbeatFlush = 500 * time.Millisecond
	}
	if o.LagInterval <= 0 {
		o.LagInterval = 5 * time.Second
	}
	if o.Retry == (retry.Policy{}) {
		o.Retry = retry.Default()
	}
	p := &Projector{o: o, log: o.Logger.With("component", "projector"), hbPending: map[string]store.Heartbeat{}}
	for _, name := range o.Streams {
		pr, ok := projections[name]
		if !ok {
			return nil, fmt.Errorf("projector: no projection for stream %q", name)
		}
		p.streams = append(p.streams, &streamState{projection: pr, consumer: ConsumerName(o.ConsumerPrefix, name)})
	}
	return p, nil
}

// ConsumerName is the durable consumer of a stream: kanade_proj_results,
// kanade_proj_obs_events, ...
func ConsumerName(prefix, stream string) string { return prefix + strings.ToLower(stream) }

// Run projects until ctx ends, then flushes the heartbeats it holds and
// returns once every goroutine it started has stopped.
func (p *Projector) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, s := range p.streams {
		wg.Go(func() { p.runStream(ctx, s) })
	}
	wg.Go(func() { p.runLag(ctx) })
	if p.o.HeartbeatFlush > 0 {
		wg.Go(func() { p.runHeartbeats(ctx) })
	}
	wg.Wait()
	// Acks are buffered by the client: send them before returning, so a
	// caller that exits at once does not cause needless redeliveries.
	_ = p.o.NC.FlushTimeout(2 * time.Second)
	return nil
}

// replayKey is the meta key recording that a stream's consumer was reset
// for this database: until it is set, the consumer is deleted before use so
// that it delivers the stream from its first message.
func (p *Projector) replayKey(s *streamState) string { return "projector.replay." + s.consumer }

func (p *Projector) consumerConfig(s *streamState) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       s.consumer,
		Description:   "kanade backend: projects " + s.stream + " into SQLite",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       p.o.AckWait,
		MaxAckPending: 8 * p.o.BatchSize,
		MaxDeliver:    -1,
	}
}

// acquire resets the consumer if this database has not been replayed into
// yet, then creates (or finds) it.
func (p *Projector) acquire(ctx context.Context, s *streamState) (jetstream.Consumer, error) {
	if _, done, err := p.o.Store.Meta(ctx, p.replayKey(s)); err != nil {
		return nil, err
	} else if !done {
		err := p.o.JS.DeleteConsumer(ctx, s.stream, s.consumer)
		switch {
		case err == nil:
			p.log.Info("deleted the projector consumer to replay the stream into a new database", "stream", s.stream, "consumer", s.consumer)
		case errors.Is(err, jetstream.ErrConsumerNotFound):
		default:
			return nil, fmt.Errorf("resetting consumer %s: %w", s.consumer, err)
		}
		if err := p.o.Store.SetMeta(ctx, p.replayKey(s), time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
			return nil, err
		}
	}
	return p.o.JS.CreateOrUpdateConsumer(ctx, s.stream, p.consumerConfig(s))
}

// runStream owns one stream's consumer: it (re)creates it whenever
// consuming fails, until ctx ends.
func (p *Projector) runStream(ctx context.Context, s *streamState) {
	log := p.log.With("stream", s.stream, "consumer", s.consumer)
	for fails := 1; ; fails++ {
		cons, err := retry.Forever(ctx, p.o.Retry, log, "projector consumer "+s.consumer, p.o.Wake, func(ctx context.Context) (jetstream.Consumer, error) {
			return p.acquire(ctx, s)
		})
		if err != nil {
			return // ctx ended
		}
		s.cons.Store(&cons)
		progressed, err := p.consume(ctx, s, cons)
		if ctx.Err() != nil {
			return
		}
		if progressed {
			fails = 1
		}
		d := p.o.Retry.Delay(fails)
		log.Warn("projector consumer stopped; recreating it", "err", err, "retry_in", d.Round(time.Millisecond))
		if !wait(ctx, d, p.o.Wake) {
			return
		}
	}
}

// wait waits d, or less when woken; false when ctx ended.
func wait(ctx context.Context, d time.Duration, wake func() <-chan struct{}) bool {
	var w <-chan struct{}
	if wake != nil {
		w = wake()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-w:
	case <-t.C:
	}
	return true
}

// consume pulls batches until an error or the end of ctx. progressed
// reports whether at least one batch was committed.
func (p *Projector) consume(ctx context.Context, s *streamState, cons jetstream.Consumer) (progressed bool, err error) {
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * p.o.BatchSize))
	if err != nil {
		return false, err
	}
	defer it.Stop()
	batch := make([]jetstream.Msg, 0, p.o.BatchSize)
	for {
		batch = batch[:0]
		first, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return progressed, err
		}
		batch = append(batch, first)
		// Fill the batch for at most BatchWait.
		fill, cancel := context.WithTimeout(ctx, p.o.BatchWait)
		var nextErr error
		for len(batch) < p.o.BatchSize {
			m, err := it.Next(jetstream.NextContext(fill))
			if err != nil {
				if !errors.Is(err, context.DeadlineExceeded) {
					nextErr = err
				}
				break
			}
			batch = append(batch, m)
		}
		cancel()
		if ctx.Err() != nil {
			p.nak(batch)
			return progressed, ctx.Err()
		}
		if err := p.applyBatch(ctx, s, batch); err != nil {
			p.nak(batch)
			return progressed, err
		}
		progressed = true
		if nextErr != nil {
			return progressed, nextErr
		}
	}
}

// nak hands uncommitted messages back for immediate redelivery (best
// effort: otherwise they come back after AckWait).
func (p *Projector) nak(batch []jetstream.Msg) {
	for _, m := range batch {
		_ = m.Nak()
	}
}

// applyBatch decodes the batch, applies it in one transaction (retrying a
// failed transaction until it commits or ctx ends) and acks every message
// after the commit.
func (p *Projector) applyBatch(ctx context.Context, s *streamState, batch []jetstream.Msg) error {
	items := make([]func(*store.Tx) error, 0, len(batch))
	var bad, ignored, forged uint64
	for _, m := range batch {
		meta, err := m.Metadata()
		if err != nil {
			bad++
			p.log.Warn("projector: message without JetStream metadata; acking it", "stream", s.stream, "subject", m.Subject(), "err", err)
			continue
		}
		apply, err := s.decode(m, meta)
		var fe *forgedError
		switch {
		case errors.Is(err, errIgnored):
			ignored++
		case errors.As(err, &fe):
			forged++
			p.log.Warn("projector: refused a message whose payload names another PC than its subject; acking it",
				"security", true, "stream", s.stream, "subject", m.Subject(), "seq", meta.Sequence.Stream,
				"subject_pc", fe.subjectPC, "payload_pc", fe.payloadPC)
		case err != nil:
			bad++
			p.log.Warn("projector: undecodable message; acking it, it can never succeed",
				"stream", s.stream, "subject", m.Subject(), "seq", meta.Sequence.Stream, "err", err)
		default:
			items = append(items, apply)
		}
	}
	if len(items) > 0 {
		for attempt := 1; ; attempt++ {
			var added map[string]uint64
			err := p.o.Store.Tx(ctx, func(tx *store.Tx) error {
				for _, apply := range items {
					if err := apply(tx); err != nil {
						return err
					}
				}
				added = tx.AddedResults()
				return nil
			})
			if err == nil {
				// Counted after the commit only: a failed
				// transaction is retried and would count twice.
				p.results.add(added)
				break
			}
			s.applyErrors.Add(1)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			d := p.o.Retry.Delay(attempt)
			p.log.Warn("projector: transaction failed; retrying the batch", "stream", s.stream, "messages", len(items), "attempt", attempt, "retry_in", d.Round(time.Millisecond), "err", err)
			if !wait(ctx, d, nil) {
				return ctx.Err()
			}
		}
	}
	// Committed: now, and only now, ack.
	for _, m := range batch {
		if err := m.Ack(); err != nil {
			p.log.Debug("projector: ack failed; the message will be redelivered and ignored", "stream", s.stream, "err", err)
		}
	}
	s.applied.Add(uint64(len(items)))
	s.decodeErrors.Add(bad)
	s.ignored.Add(ignored)
	s.forged.Add(forged)
	s.batches.Add(1)
	n := int64(len(batch))
	s.lastBatch.Store(n)
	for {
		m := s.maxBatch.Load()
		if n <= m || s.maxBatch.CompareAndSwap(m, n) {
			break
		}
	}
	return nil
}
