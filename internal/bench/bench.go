// Package bench runs kanade's scale benchmarks on one machine, each
// measured side by side with the physical floor of the transport in the
// same run (`kanade bench fanout`, `kanade bench storm`).
//
// Layout of a run: the broker and the backend (server.Run: embedded
// nats-server, bootstrap, projectors, SQLite, jobs, scheduler, HTTP API)
// run in a child process (BackendMain), because 10,000 agent sockets and
// 10,000 broker sockets do not fit in one process's open-file limit; the
// simulated agents (internal/sim) and the floor's plain responders run in
// the bench process. The child's CPU and memory come from /proc (Linux;
// elsewhere they are reported as "na").
//
// Guarantees: every figure is printed as key=value pairs on one line per
// fleet size, with the keys documented on FanoutResult and StormResult;
// the child is stopped (killed if it does not stop) whatever happens, and
// dies with the bench on Linux; work directories are removed unless Keep
// is set or the run failed (then their path is printed, with the logs).
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/sim"
)

// Options configure a benchmark run.
type Options struct {
	// Agents are the fleet sizes, one measurement each (fresh backend
	// and fleet per size).
	Agents []int
	// Backend starts the backend child (`kanade bench backend`).
	Backend Command
	// WorkDir holds the backend's data (broker store, SQLite) and the
	// logs; default the system temp dir.
	WorkDir string
	// AgentDir holds the simulated agents' outboxes and ledgers; default
	// /dev/shm when it exists (10,000 agents fsyncing on one disk would
	// measure that disk, not kanade: real PCs each have their own),
	// else WorkDir.
	AgentDir string
	// Ramp is how many agents start per second (default 500).
	Ramp float64
	// Heartbeat is the agents' heartbeat interval (default 30 s).
	Heartbeat time.Duration
	// FloorRounds is how many floor fan-outs are timed; the median is
	// the floor (default 3).
	FloorRounds int
	// Timeout bounds each phase (start, settle, measurement); default
	// 5 min.
	Timeout time.Duration
	// Keep keeps the work directories.
	Keep bool
	// CPUProfile, when set, receives a CPU profile of the bench process
	// (the agents) during the measurement (fanout: publish → SQLite
	// complete), and CPUProfile+".backend" one of the backend child, for
	// go tool pprof. (storm: the agents only, kill → all online.)
	CPUProfile string
	// Out receives the summary lines; Log the progress (both required).
	Out io.Writer
	Log io.Writer
}

func (o *Options) defaults() error {
	if len(o.Agents) == 0 {
		return errors.New("bench: no fleet size given")
	}
	for _, n := range o.Agents {
		if n < 1 {
			return fmt.Errorf("bench: fleet size %d: at least 1 agent", n)
		}
	}
	if o.Backend.Path == "" {
		return errors.New("bench: no backend command")
	}
	if o.Out == nil || o.Log == nil {
		return errors.New("bench: Out and Log are required")
	}
	if o.WorkDir == "" {
		o.WorkDir = os.TempDir()
	}
	if o.AgentDir == "" {
		o.AgentDir = o.WorkDir
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			o.AgentDir = "/dev/shm"
		}
	}
	if o.Ramp <= 0 {
		o.Ramp = 500
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 30 * time.Second
	}
	if o.FloorRounds <= 0 {
		o.FloorRounds = 3
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	if limit, err := sim.RaiseFileLimit(); err != nil {
		fmt.Fprintln(o.Log, "bench: warning:", err)
	} else if limit > 0 {
		for _, n := range o.Agents {
			if uint64(n)+256 > limit {
				return fmt.Errorf("bench: %d agents need about %d open files in this process; the limit is %d", n, n+256, limit)
			}
		}
	}
	return nil
}

// ProcSample is one reading of a process's accounting (Linux /proc).
type ProcSample struct {
	// OK is false when nothing could be read (not Linux, process gone).
	OK bool
	// CPU is user + system time since the process started.
	CPU time.Duration
	// RSS and HWM (peak RSS) in bytes.
	RSS, HWM uint64
}

// rig is one fleet size's backend child, its clients and the fleet.
type rig struct {
	o        Options
	name     string
	dir      string // work dir of this size
	agentDir string
	spec     backendSpec
	be       *backend
	api      *apiClient
	nc       *nats.Conn
	fc       *fleetclient.Client
	fleet    *sim.Fleet
	agentLog *os.File
	failed   bool
}

// newRig starts a backend child for one measurement and connects to it.
func newRig(ctx context.Context, o Options, name string) (*rig, error) {
	dir, err := os.MkdirTemp(o.WorkDir, "kanade-bench-"+name+"-")
	if err != nil {
		return nil, fmt.Errorf("bench: work dir: %w", err)
	}
	agentDir, err := os.MkdirTemp(o.AgentDir, "kanade-bench-agents-")
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("bench: agent dir: %w", err)
	}
	r := &rig{o: o, name: name, dir: dir, agentDir: agentDir}
	listen, err := freeListen()
	if err != nil {
		r.close()
		return nil, err
	}
	r.spec = backendSpec{cmd: o.Backend, dataDir: filepath.Join(dir, "backend"), listen: listen, token: randomToken(), logPath: logPath(dir)}
	if r.be, err = startBackend(ctx, r.spec, o.Timeout); err != nil {
		r.failed = true
		r.close()
		return nil, err
	}
	r.api = newAPIClient(r.be.httpURL, r.spec.token)
	r.nc, err = nats.Connect(r.be.natsURL, nats.Name("kanade-bench"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		r.failed = true
		r.close()
		return nil, fmt.Errorf("bench: connecting to the backend's broker: %w", err)
	}
	if r.fc, err = fleetclient.New(r.nc); err != nil {
		r.failed = true
		r.close()
		return nil, err
	}
	return r, nil
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (r *rig) logf(format string, a ...any) {
	fmt.Fprintf(r.o.Log, "bench %s: "+format+"\n", append([]any{r.name}, a...)...)
}

// startFleet starts n simulated agents and returns once the backend has a
// heartbeat from every one of them and the start-up burst has settled.
func (r *rig) startFleet(ctx context.Context, n int) error {
	var err error
	if r.agentLog, err = os.Create(filepath.Join(r.dir, "agents.log")); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(r.agentLog, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r.logf("starting %d agents at %g/s (data under %s)", n, r.o.Ramp, r.agentDir)
	r.fleet, err = sim.Start(ctx, sim.Options{
		Agents: n, Heartbeat: r.o.Heartbeat, Ramp: r.o.Ramp, NATSURLs: []string{r.be.natsURL},
		Exec: sim.ExecNoop, DataDir: r.agentDir, Logger: logger,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, r.o.Timeout+time.Duration(float64(n)/r.o.Ramp*float64(time.Second)))
	defer cancel()
	if err := r.fleet.WaitStarted(ctx); err != nil {
		return err
	}
	begin := time.Now()
	err = poll(ctx, 200*time.Millisecond, func() (bool, error) {
		if !r.be.alive() {
			return false, r.be.died()
		}
		total, _, err := r.api.agentsSeen(ctx)
		if err != nil {
			return false, nil // the API may be busy; the deadline decides
		}
		return total >= n, nil
	})
	if err != nil {
		total, _, _ := r.api.agentsSeen(context.Background())
		return fmt.Errorf("bench: %d of %d agents known to the backend: %w", total, n, err)
	}
	if err := r.fleet.Err(); err != nil {
		return err
	}
	r.logf("all %d agents known to the backend %s after the ramp; %s", n, time.Since(begin).Round(time.Millisecond), r.fleet.Report())
	r.settle(ctx)
	return nil
}

// settle waits until the bench and the backend are both nearly idle (under
// a quarter of a core over half a second): the start-up burst (config
// reads, replays, online events) must not overlap the measurement. On a
// machine that never gets that quiet it gives up at ctx's deadline and
// measures anyway, saying so.
func (r *rig) settle(ctx context.Context) {
	const window = 500 * time.Millisecond
	begin := time.Now()
	for {
		s0, _ := readProc(os.Getpid())
		b0, _ := readProc(r.be.pid())
		t := time.NewTimer(window)
		select {
		case <-ctx.Done():
			t.Stop()
			r.logf("warning: not quiet after %s; measuring anyway", time.Since(begin).Round(time.Millisecond))
			return
		case <-t.C:
		}
		s1, _ := readProc(os.Getpid())
		b1, _ := readProc(r.be.pid())
		if !s1.OK || !b1.OK {
			return // no /proc: nothing to judge by
		}
		if s1.CPU-s0.CPU < window/4 && b1.CPU-b0.CPU < window/4 {
			r.logf("quiet after %s", time.Since(begin).Round(time.Millisecond))
			return
		}
	}
}

// close stops the fleet and the child and removes the directories (kept,
// and named, after a failure or with Keep).
func (r *rig) close() {
	if r.fleet != nil {
		r.fleet.Stop()
	}
	if r.nc != nil {
		r.nc.Close()
	}
	if r.be != nil {
		r.be.stop(30 * time.Second)
	}
	if r.agentLog != nil {
		r.agentLog.Close()
	}
	if r.o.Keep || r.failed {
		r.logf("kept %s (backend.log, agents.log) and %s", r.dir, r.agentDir)
		return
	}
	os.RemoveAll(r.agentDir)
	os.RemoveAll(r.dir)
}

// profile starts the CPU profile if one was asked for (of the backend
// child too with backend) and returns its stop.
func (r *rig) profile(backend bool) (stop func()) {
	if r.o.CPUProfile == "" {
		return func() {}
	}
	be := r.be
	if !backend {
		be = nil
	}
	be.control(ctlProfileStart + r.o.CPUProfile + ".backend")
	f, err := os.Create(r.o.CPUProfile)
	if err != nil {
		r.logf("warning: CPU profile: %v", err)
		return func() { be.control(ctlProfileStop) }
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		r.logf("warning: CPU profile: %v", err)
		return func() { be.control(ctlProfileStop) }
	}
	return func() {
		be.control(ctlProfileStop)
		pprof.StopCPUProfile()
		f.Close()
	}
}

// poll calls cond every period until it reports true, fails, or ctx ends.
func poll(ctx context.Context, period time.Duration, cond func() (bool, error)) error {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// fmtSeconds prints seconds to a tenth of a millisecond.
func fmtSeconds(d time.Duration) string { return fmt.Sprintf("%.4f", d.Seconds()) }

// fmtRatio prints a/b with two decimals ("na" when b is zero).
func fmtRatio(a, b time.Duration) string {
	if b <= 0 {
		return "na"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}

// fmtMiB prints bytes in MiB, or "na" when unknown.
func fmtMiB(b uint64, ok bool) string {
	if !ok {
		return "na"
	}
	return fmt.Sprintf("%.0f", float64(b)/(1<<20))
}

// fmtCPU prints CPU seconds, or "na" when unknown.
func fmtCPU(d time.Duration, ok bool) string {
	if !ok {
		return "na"
	}
	return fmt.Sprintf("%.2f", d.Seconds())
}
