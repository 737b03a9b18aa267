// Package sim is the fleet simulator: thousands of kanade agents in one
// process, each the real agent code (agent.New + Run) with its own NATS
// connection, pc_id (sim-00001, sim-00002, …) and data directory, so that
// the broker and the backend see exactly the traffic of a real fleet:
// connections and reconnections with the agent's jittered backoff,
// subscriptions, heartbeats, config sync (direct gets + core
// notifications), group membership, admission ledger, gates, durable outbox
// and JetStream publishes with their PubAcks.
//
// What it simulates faithfully: everything an agent says on the wire and
// everything it writes to its data dir, per agent.
//
// What it does not simulate:
//   - Scripts: the default executor answers in-process (ExecNoop, ExecEcho);
//     ExecReal spawns them with runner.Run like a real agent, which on one
//     machine measures process creation more than kanade.
//   - Host facts: inventory collection and host_perf samples are off
//     (agent.Config.NoHostFacts); every agent would report the same host.
//     Heartbeats still carry the simulator process's RSS and CPU.
//   - Self-update (agent.Config.SelfUpdate is nil).
//   - Independent machines: all agents share one process, one scheduler,
//     one disk (put DataDir on tmpfs, e.g. /dev/shm, unless the disk is
//     what you want to measure) and one network stack (loopback).
//
// Guarantees: Start returns once the group memberships are written (the
// agents themselves start in the background at the configured ramp); Stop
// stops every agent the way a service stop does (running commands
// killed, outboxes flushed while connected) and returns when all have
// returned. Report is safe to call at any time.
package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/procstat"
	"github.com/kanade-project/kanade/internal/wire"
)

// Options configure a simulated fleet.
type Options struct {
	// Agents is the number of simulated agents (≥ 1).
	Agents int
	// Groups, when positive, puts agent i (0-based) in group GroupName(i %
	// Groups) through KV agent_groups before the agents start.
	Groups int
	// Heartbeat is each agent's heartbeat interval (default 30 s).
	Heartbeat time.Duration
	// Ramp is how many agents start per second; 0 starts all at once.
	Ramp float64
	// NATSURLs are the broker URLs every agent connects to.
	NATSURLs []string
	// Token authenticates to the broker.
	Token string
	// Exec selects the executor (default ExecNoop).
	Exec ExecMode
	// DataDir holds one directory per agent (outbox, ledger). Empty: a
	// temporary directory removed by Stop.
	DataDir string
	// IDPrefix starts every pc_id (default "sim-"); ids are the prefix and
	// the 1-based index, zero-padded to five digits.
	IDPrefix string
	// Version is the agent version reported (default "sim").
	Version string
	// Logger receives every agent's log; default: warnings and errors to
	// stderr (10,000 agents at info would log more than they work).
	Logger *slog.Logger
	// NATSOptions are added to every agent's connection options.
	NATSOptions []nats.Option
}

// Fleet is a running simulated fleet.
type Fleet struct {
	o       Options
	ids     []string
	dialer  *countingDialer
	tempDir string

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	started  atomic.Int64
	failed   atomic.Int64
	rampDone chan struct{}

	errMu    sync.Mutex
	firstErr error

	rssMu      sync.Mutex
	rssSampler procstat.Sampler
}

// ID returns the pc_id of agent i (0-based) for a prefix.
func ID(prefix string, i int) string { return fmt.Sprintf("%s%05d", prefix, i+1) }

// GroupName is the name of simulated group g (0-based).
func GroupName(g int) string { return fmt.Sprintf("simgrp-%03d", g) }

// Start writes the group memberships, then starts the agents in the
// background at the configured ramp; it returns at once after that.
func Start(ctx context.Context, o Options) (*Fleet, error) {
	if o.Agents < 1 {
		return nil, errors.New("sim: at least one agent is needed")
	}
	if len(o.NATSURLs) == 0 {
		return nil, errors.New("sim: no NATS URL")
	}
	if o.Ramp < 0 {
		return nil, errors.New("sim: the ramp must not be negative")
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 30 * time.Second
	}
	if o.IDPrefix == "" {
		o.IDPrefix = "sim-"
	}
	if o.Version == "" {
		o.Version = "sim"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	exec, err := o.Exec.Executor()
	if err != nil {
		return nil, err
	}
	f := &Fleet{o: o, dialer: newCountingDialer(), rampDone: make(chan struct{})}
	if o.DataDir == "" {
		if f.tempDir, err = os.MkdirTemp("", "kanade-sim-"); err != nil {
			return nil, fmt.Errorf("sim: data dir: %w", err)
		}
		f.o.DataDir = f.tempDir
	}
	f.ids = make([]string, o.Agents)
	for i := range f.ids {
		f.ids[i] = ID(o.IDPrefix, i)
		if err := wire.CheckToken("pc_id", f.ids[i]); err != nil {
			f.removeTemp()
			return nil, fmt.Errorf("sim: id prefix %q: %w", o.IDPrefix, err)
		}
	}
	if o.Groups > 0 {
		if err := f.assignGroups(ctx); err != nil {
			f.removeTemp()
			return nil, err
		}
	}

	runCtx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.wg.Go(func() {
		defer close(f.rampDone)
		f.ramp(runCtx, exec)
	})
	return f, nil
}

// ramp starts the agents, Ramp per second, each on its own goroutine.
func (f *Fleet) ramp(ctx context.Context, exec agent.Executor) {
	begin := time.Now()
	for i, id := range f.ids {
		if f.o.Ramp > 0 {
			due := begin.Add(time.Duration(float64(i) / f.o.Ramp * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		a, err := agent.New(agent.Config{
			ID:                id,
			NATSURLs:          f.o.NATSURLs,
			Token:             f.o.Token,
			DataDir:           filepath.Join(f.o.DataDir, id),
			Version:           f.o.Version,
			HeartbeatInterval: f.o.Heartbeat,
			Exec:              exec,
			Logger:            f.o.Logger,
			NATSOptions:       append([]nats.Option{nats.SetCustomDialer(f.dialer)}, f.o.NATSOptions...),
			NoHostFacts:       true,
		})
		if err != nil {
			f.fail(fmt.Errorf("sim: agent %s: %w", id, err))
			continue
		}
		f.started.Add(1)
		f.wg.Go(func() {
			if err := a.Run(ctx); err != nil {
				f.fail(fmt.Errorf("sim: agent %s stopped: %w", id, err))
			}
		})
	}
}

func (f *Fleet) fail(err error) {
	f.failed.Add(1)
	f.o.Logger.Error("simulated agent failed", "err", err)
	f.errMu.Lock()
	if f.firstErr == nil {
		f.firstErr = err
	}
	f.errMu.Unlock()
}

// assignGroups writes agent_groups/<pc> for every agent, a few writers at
// a time (10,000 sequential puts would take seconds of round trips).
func (f *Fleet) assignGroups(ctx context.Context) error {
	opts := []nats.Option{nats.Name("kanade-sim groups")}
	if f.o.Token != "" {
		opts = append(opts, nats.Token(f.o.Token))
	}
	nc, err := nats.Connect(strings.Join(f.o.NATSURLs, ","), opts...)
	if err != nil {
		return fmt.Errorf("sim: connecting to write groups: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	kv, err := js.KeyValue(ctx, wire.BucketAgentGroups)
	if err != nil {
		return fmt.Errorf("sim: bucket %s (is the broker bootstrapped?): %w", wire.BucketAgentGroups, err)
	}
	const writers = 16
	next := make(chan int)
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for i := range next {
				b, _ := json.Marshal(wire.AgentGroups{Groups: []string{GroupName(i % f.o.Groups)}})
				if _, err := kv.Put(ctx, f.ids[i], b); err != nil {
					errs <- fmt.Errorf("sim: writing %s/%s: %w", wire.BucketAgentGroups, f.ids[i], err)
					return
				}
			}
		})
	}
	var ferr error
feed:
	for i := range f.ids {
		select {
		case next <- i:
		case ferr = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if ferr == nil {
		select {
		case ferr = <-errs:
		default:
		}
	}
	return ferr
}

// IDs returns the pc_ids of the fleet, in order.
func (f *Fleet) IDs() []string { return append([]string(nil), f.ids...) }

// WaitStarted returns once every agent was started (the ramp is over), or
// with ctx's error.
func (f *Fleet) WaitStarted(ctx context.Context) error {
	select {
	case <-f.rampDone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Err is the first agent failure, if any (an agent that could not be
// created or whose Run returned an error).
func (f *Fleet) Err() error {
	f.errMu.Lock()
	defer f.errMu.Unlock()
	return f.firstErr
}

// Stop stops every agent and waits for them; a temporary data dir is
// removed.
func (f *Fleet) Stop() {
	f.cancel()
	f.wg.Wait()
	f.removeTemp()
}

func (f *Fleet) removeTemp() {
	if f.tempDir != "" {
		_ = os.RemoveAll(f.tempDir)
	}
}

// Connected is the number of agent sockets open now (cheaper than Report,
// for polling).
func (f *Fleet) Connected() int { return int(f.dialer.open.Load()) }

// Dials counts the agents' connection attempts so far.
func (f *Fleet) Dials() int64 { return f.dialer.dials.Load() }

// Report is the simulator's own footprint and connection state.
type Report struct {
	Agents  int `json:"agents"`
	Started int `json:"started"`
	Failed  int `json:"failed"`
	// Connected is the number of agent sockets open now; Dials counts
	// every connection attempt (first connections and reconnections) and
	// DialFailures the attempts refused.
	Connected    int   `json:"connected"`
	Dials        int64 `json:"dials"`
	DialFailures int64 `json:"dial_failures"`
	Goroutines   int   `json:"goroutines"`
	// HeapInuse and StackInuse are the Go runtime's figures for the whole
	// process; RSS is the process's resident set (0 where unknown).
	HeapInuse  uint64 `json:"heap_inuse_bytes"`
	StackInuse uint64 `json:"stack_inuse_bytes"`
	RSS        uint64 `json:"rss_bytes"`
}

// PerAgentGo is (HeapInuse + StackInuse) / Started, in bytes.
func (r Report) PerAgentGo() uint64 { return perAgent(r.HeapInuse+r.StackInuse, r.Started) }

// PerAgentRSS is RSS / Started, in bytes.
func (r Report) PerAgentRSS() uint64 { return perAgent(r.RSS, r.Started) }

func perAgent(v uint64, n int) uint64 {
	if n <= 0 {
		return 0
	}
	return v / uint64(n)
}

// String is one key=value line: sim agents=… started=… connected=… …
func (r Report) String() string {
	return fmt.Sprintf("sim agents=%d started=%d failed=%d connected=%d dials=%d dial_failures=%d goroutines=%d heap_inuse_mib=%.1f stack_inuse_mib=%.1f rss_mib=%.1f go_kib_per_agent=%.1f rss_kib_per_agent=%.1f",
		r.Agents, r.Started, r.Failed, r.Connected, r.Dials, r.DialFailures, r.Goroutines,
		mib(r.HeapInuse), mib(r.StackInuse), mib(r.RSS), kib(r.PerAgentGo()), kib(r.PerAgentRSS()))
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
func kib(b uint64) float64 { return float64(b) / (1 << 10) }

// Report measures the fleet now. It reads runtime.MemStats, which stops
// the world briefly: call it every few seconds, not in a tight loop.
func (f *Fleet) Report() Report {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	f.rssMu.Lock()
	rss, _, _ := f.rssSampler.Sample()
	f.rssMu.Unlock()
	return Report{
		Agents:       len(f.ids),
		Started:      int(f.started.Load()),
		Failed:       int(f.failed.Load()),
		Connected:    int(f.dialer.open.Load()),
		Dials:        f.dialer.dials.Load(),
		DialFailures: f.dialer.fails.Load(),
		Goroutines:   runtime.NumGoroutine(),
		HeapInuse:    ms.HeapInuse,
		StackInuse:   ms.StackInuse,
		RSS:          rss,
	}
}

// WriteReports writes a Report line to w every period until ctx ends.
func (f *Fleet) WriteReports(ctx context.Context, w io.Writer, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fmt.Fprintln(w, f.Report())
		}
	}
}
