package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/release"
	"github.com/kanade-project/kanade/internal/retry"
	"github.com/kanade-project/kanade/internal/selfupdate"
	"github.com/kanade-project/kanade/internal/signing"
)

// RolloutOptions configure `kanade bench rollout`. Of Options, Agents,
// Backend, WorkDir, Timeout, Keep, Out and Log are used.
type RolloutOptions struct {
	Options
	// Size is the release's size in bytes (default 12 MiB).
	Size int64
	// Jitters are the rollout jitters, one measurement each per fleet
	// size (default 0): each downloader starts after a uniform random
	// delay in [0, jitter), as the agent's updater does.
	Jitters []time.Duration
}

// RolloutResult is one self-update rollout measurement. Its String is the
// summary line (keys in this order):
//
//	rollout agents=N jitter_s= size_mib= total_s= peak_concurrent= egress_mib=
//	        broker_peak_rss_mib= egress_ratio= download_p50_s= download_p99_s=
//	        retries= backend_cpu_s= downloaders_peak_rss_mib=
//
// A signed release of size_mib random bytes is published to agent_releases
// before the clock starts; then N downloaders, each on its own NATS
// connection (connected before the clock starts, as a fleet is), fetch and
// verify it with the agent updater's own selfupdate.Fetch, each after its
// own jitter. total_s runs from the start of the rollout to the last
// verified download; peak_concurrent is the most downloads in flight at
// once (lookup to verified digest, retries included); download_p50/p99_s
// are per-downloader times from its start (after its jitter) to its
// verified digest; retries counts failed attempts that were retried with
// the agent's backoff. egress_mib is the growth of the broker's out_bytes
// (nats-server monitoring, /varz) over the rollout: the bytes of every
// message the broker delivered — chunks, headers, API replies, the
// backend's own traffic — without protocol framing; egress_ratio is it
// over N × size. broker_peak_rss_mib is the backend child's (broker and
// backend, one process) VmHWM, its peak resident set since it started;
// backend_cpu_s its CPU during the rollout. downloaders_peak_rss_mib is
// the largest resident set of this process (the N downloaders) sampled
// every 100 ms during the rollout: nats.go buffers an object's chunks
// ahead of the reader, so a download costs memory on the agent too.
type RolloutResult struct {
	Agents         int
	Jitter         time.Duration
	Size           int64
	Total          time.Duration
	PeakConcurrent int64
	// Egress is the broker's out_bytes growth; EgressOK false when the
	// monitoring endpoint could not be read.
	Egress                   int64
	EgressOK                 bool
	Backend                  ProcSample // at the end of the rollout
	BackendCPU               time.Duration
	CPUKnown                 bool
	DownloadP50, DownloadP99 time.Duration
	Retries                  int64
	// Downloaders is the peak sampled RSS of this process; DownloadersOK
	// false without /proc.
	Downloaders   uint64
	DownloadersOK bool
}

func (r RolloutResult) String() string {
	egress, ratio := "na", "na"
	if r.EgressOK {
		egress = fmt.Sprintf("%.1f", float64(r.Egress)/(1<<20))
		if r.Agents > 0 && r.Size > 0 {
			ratio = fmt.Sprintf("%.3f", float64(r.Egress)/(float64(r.Agents)*float64(r.Size)))
		}
	}
	return fmt.Sprintf("rollout agents=%d jitter_s=%g size_mib=%g total_s=%s peak_concurrent=%d egress_mib=%s broker_peak_rss_mib=%s egress_ratio=%s download_p50_s=%s download_p99_s=%s retries=%d backend_cpu_s=%s downloaders_peak_rss_mib=%s",
		r.Agents, r.Jitter.Seconds(), float64(r.Size)/(1<<20), fmtSeconds(r.Total), r.PeakConcurrent, egress,
		fmtMiB(r.Backend.HWM, r.Backend.OK), ratio, fmtSeconds(r.DownloadP50), fmtSeconds(r.DownloadP99), r.Retries,
		fmtCPU(r.BackendCPU, r.CPUKnown), fmtMiB(r.Downloaders, r.DownloadersOK))
}

func (o *RolloutOptions) defaults() error {
	if err := o.Options.defaults(); err != nil {
		return err
	}
	if o.Size == 0 {
		o.Size = 12 << 20
	}
	if o.Size < 1 {
		return fmt.Errorf("bench: release size %d: at least one byte", o.Size)
	}
	if len(o.Jitters) == 0 {
		o.Jitters = []time.Duration{0}
	}
	for _, j := range o.Jitters {
		if j < 0 {
			return fmt.Errorf("bench: jitter %s: must not be negative", j)
		}
	}
	return nil
}

// Rollout measures, for each fleet size and each jitter, one self-update
// rollout and prints one RolloutResult line each.
func Rollout(ctx context.Context, o RolloutOptions) error {
	if err := o.defaults(); err != nil {
		return err
	}
	for _, n := range o.Agents {
		for _, j := range o.Jitters {
			res, err := RunRollout(ctx, o, n, j)
			if err != nil {
				return fmt.Errorf("rollout agents=%d jitter=%s: %w", n, j, err)
			}
			fmt.Fprintln(o.Out, res)
		}
	}
	return nil
}

// rolloutVersion is the version label of the benchmark's release.
const rolloutVersion = "bench-rollout"

// RunRollout is one rollout measurement: n downloaders, one jitter, a
// fresh backend child.
func RunRollout(ctx context.Context, o RolloutOptions, n int, jitter time.Duration) (res RolloutResult, err error) {
	o.Agents, o.Jitters = []int{n}, []time.Duration{jitter}
	if err := o.defaults(); err != nil {
		return res, err
	}
	res.Agents, res.Jitter, res.Size = n, jitter, o.Size
	name := fmt.Sprintf("rollout-%d-%s", n, jitter)
	dir, err := os.MkdirTemp(o.WorkDir, "kanade-bench-"+name+"-")
	if err != nil {
		return res, fmt.Errorf("bench: work dir: %w", err)
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(o.Log, "bench %s: "+format+"\n", append([]any{name}, a...)...)
	}
	var be *backend
	var nc *nats.Conn
	defer func() {
		if nc != nil {
			nc.Close()
		}
		if be != nil {
			be.stop(30 * time.Second)
		}
		if o.Keep || err != nil {
			logf("kept %s (backend.log, downloads.log)", dir)
			return
		}
		os.RemoveAll(dir)
	}()
	listen, err := freeListen()
	if err != nil {
		return res, err
	}
	spec := backendSpec{cmd: o.Backend, dataDir: filepath.Join(dir, "backend"), listen: listen, token: randomToken(), logPath: logPath(dir), monitor: true}
	if be, err = startBackend(ctx, spec, o.Timeout); err != nil {
		return res, err
	}
	if nc, err = nats.Connect(be.natsURL, nats.Name("kanade-bench publisher")); err != nil {
		return res, fmt.Errorf("bench: connecting to the backend's broker: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return res, err
	}

	// 1. The release, signed as `kanade agent publish --release-key` signs
	// it; the downloaders trust the key as an endpoint with
	// release_keys_file does.
	pctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	object, ring, err := publishRandomRelease(pctx, js, dir, o.Size)
	if err != nil {
		return res, err
	}
	logf("published %s (%d bytes, signed)", object, o.Size)

	// 2. The downloaders' connections, before the clock starts: a fleet
	// is connected when the target version changes.
	logf("connecting %d downloaders", n)
	fleet, err := openDownloaders(pctx, be.natsURL, n)
	if err != nil {
		return res, err
	}
	defer fleet.close()

	// 3. The rollout.
	out0, err0 := brokerOutBytes(ctx, be.monitorURL)
	be0, _ := readProc(be.pid())
	dlog, err := os.Create(filepath.Join(dir, "downloads.log"))
	if err != nil {
		return res, err
	}
	defer dlog.Close()
	logger := slog.New(slog.NewTextHandler(dlog, &slog.HandlerOptions{Level: slog.LevelWarn}))
	logf("rollout to %d downloaders, jitter %s", n, jitter)
	rctx, rcancel := context.WithTimeout(ctx, o.Timeout+jitter)
	defer rcancel()
	// Memory kept by the runtime from earlier work (an earlier size in
	// this process) must not count as the downloaders'.
	debug.FreeOSMemory()
	peakRSS := sampleRSS(os.Getpid(), 100*time.Millisecond)
	st, err := fleet.rollout(rctx, object, ring, jitter, logger)
	res.Downloaders, res.DownloadersOK = peakRSS()
	if err != nil {
		return res, err
	}
	if !be.alive() {
		return res, be.died()
	}
	out1, err1 := brokerOutBytes(ctx, be.monitorURL)
	be1, _ := readProc(be.pid())
	res.Total = st.total
	res.PeakConcurrent = st.peak
	res.Retries = st.retries
	slices.Sort(st.durations)
	res.DownloadP50 = st.durations[len(st.durations)/2]
	res.DownloadP99 = st.durations[min(len(st.durations)-1, len(st.durations)*99/100)]
	res.Backend = be1
	res.CPUKnown = be0.OK && be1.OK
	res.BackendCPU = be1.CPU - be0.CPU
	if err := errors.Join(err0, err1); err != nil {
		logf("warning: broker egress unknown: %v", err)
	} else {
		res.Egress, res.EgressOK = out1-out0, true
	}
	return res, nil
}

// publishRandomRelease writes size random bytes to a file under dir
// (streamed: a large release is never held in memory), publishes it with
// release.Publish signed by a fresh release key, removes the file, and
// returns the object name and a ring trusting that key.
func publishRandomRelease(ctx context.Context, js jetstream.JetStream, dir string, size int64) (string, *signing.Ring, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, err
	}
	ring, err := signing.ParseRing([]byte(signing.PublicLine(signing.PurposeRelease, pub)), signing.PurposeRelease)
	if err != nil {
		return "", nil, err
	}
	path := filepath.Join(dir, "release.bin")
	f, err := os.Create(path)
	if err != nil {
		return "", nil, fmt.Errorf("bench: release file: %w", err)
	}
	defer os.Remove(path)
	_, err = io.CopyN(f, rand.Reader, size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", nil, fmt.Errorf("bench: release file: %w", err)
	}
	rec, err := release.Publish(ctx, js, release.PublishOptions{Path: path, Version: rolloutVersion, OS: runtime.GOOS, Arch: runtime.GOARCH, Key: priv})
	if err != nil {
		return "", nil, fmt.Errorf("bench: publishing the release: %w", err)
	}
	return release.ObjectName(rec.Version, rec.OS, rec.Arch), ring, nil
}

// downloaders are n NATS connections, one per simulated agent.
type downloaders struct {
	conns []*nats.Conn
	js    []jetstream.JetStream
}

// openDownloaders connects n clients, a few at a time. They reconnect
// forever with nats.go's defaults, as an agent does.
func openDownloaders(ctx context.Context, url string, n int) (*downloaders, error) {
	js := make([]jetstream.JetStream, n)
	conns, err := dialAll(ctx, url, n, "downloader", []nats.Option{nats.Name("kanade-bench rollout"), nats.MaxReconnects(-1)},
		func(i int, nc *nats.Conn) (err error) {
			js[i], err = jetstream.New(nc)
			return err
		})
	if err != nil {
		return nil, err
	}
	return &downloaders{conns: conns, js: js}, nil
}

func (d *downloaders) close() { closeAll(d.conns) }

// rolloutStats is what one rollout measured.
type rolloutStats struct {
	total     time.Duration
	peak      int64
	retries   int64
	durations []time.Duration
}

// rollout has every downloader fetch object after its own jitter, and
// returns once all have verified it. A verification failure is not
// retried (the agent refuses such a release until the target changes)
// and fails the run; any other failure is retried with the agent's
// backoff, woken by a reconnection, until ctx ends.
func (d *downloaders) rollout(ctx context.Context, object string, ring *signing.Ring, jitter time.Duration, logger *slog.Logger) (rolloutStats, error) {
	var st rolloutStats
	n := len(d.conns)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var inFlight, peak, retries atomic.Int64
	ends := make([]time.Time, n)
	durations := make([]time.Duration, n)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range n {
		var delay time.Duration
		if jitter > 0 {
			delay = mrand.N(jitter)
		}
		wg.Go(func() {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			start := time.Now()
			// The reconnection channel of the agent's connstate tracker
			// is not here; nats.go's own handler stands in for it.
			reconnected := make(chan struct{}, 1)
			d.conns[i].SetReconnectHandler(func(*nats.Conn) {
				select {
				case reconnected <- struct{}{}:
				default:
				}
			})
			attempts := 0
			_, err := retry.Forever(ctx, retry.Default(), logger, "release "+object, func() <-chan struct{} { return reconnected }, func(ctx context.Context) (struct{}, error) {
				attempts++
				if attempts > 1 {
					retries.Add(1)
				}
				cur := inFlight.Add(1)
				defer inFlight.Add(-1)
				for p := peak.Load(); cur > p && !peak.CompareAndSwap(p, cur); p = peak.Load() {
				}
				// The agent's own download, minus its staging file:
				// the bytes are only hashed, because 10,000 agents'
				// staging files and fsyncs would measure this machine's
				// disk, not the broker, and each real agent has its own
				// disk.
				_, _, err := selfupdate.Fetch(ctx, d.js[i], object, ring, func(release.Record) (io.Writer, error) { return nil, nil })
				// A release that does not verify is a bug in the
				// benchmark or in kanade, never a condition to retry.
				var ve *selfupdate.VerifyError
				if errors.As(err, &ve) {
					cancel(fmt.Errorf("downloader %d: %w", i, err))
					return struct{}{}, nil
				}
				return struct{}{}, err
			})
			if err == nil && ctx.Err() == nil {
				ends[i] = time.Now()
				durations[i] = ends[i].Sub(start)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		done := 0
		for _, e := range ends {
			if !e.IsZero() {
				done++
			}
		}
		return st, fmt.Errorf("%d of %d downloads verified: %w", done, n, err)
	}
	last := t0
	for _, e := range ends {
		if e.After(last) {
			last = e
		}
	}
	st.total = last.Sub(t0)
	st.peak = peak.Load()
	st.retries = retries.Load()
	st.durations = durations
	return st, nil
}

// sampleRSS samples a process's resident set every period until the
// returned function is called, which returns the largest sample (ok false
// when none could be read).
func sampleRSS(pid int, period time.Duration) func() (uint64, bool) {
	var peak uint64
	var ok bool
	read := func() {
		if s, err := readProc(pid); err == nil {
			peak, ok = max(peak, s.RSS), true
		}
	}
	read()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				read()
			}
		}
	}()
	return func() (uint64, bool) {
		close(stop)
		<-done
		read()
		return peak, ok
	}
}

// brokerOutBytes reads out_bytes from the broker's monitoring endpoint.
func brokerOutBytes(ctx context.Context, monitorURL string) (int64, error) {
	if monitorURL == "" {
		return 0, errors.New("the backend has no monitoring endpoint")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, monitorURL+"/varz", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET /varz: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /varz: %s", resp.Status)
	}
	var v struct {
		OutBytes *int64 `json:"out_bytes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return 0, fmt.Errorf("GET /varz: %w", err)
	}
	if v.OutBytes == nil {
		return 0, errors.New("GET /varz: no out_bytes")
	}
	return *v.OutBytes, nil
}

// ParseSize parses a byte size: a number with an optional unit B, KiB,
// MiB or GiB (KB, MB, GB are taken as the binary units too, as a release's
// size is always meant in those).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	num := strings.TrimRightFunc(t, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.') })
	unit := strings.ToLower(strings.TrimSpace(t[len(num):]))
	mult := map[string]float64{"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}[unit]
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || mult == 0 || f <= 0 {
		return 0, fmt.Errorf("size %q: expected a positive number with an optional unit (B, KiB, MiB, GiB)", s)
	}
	return int64(f * mult), nil
}
