package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/wire"
)

// FootprintOptions configure `kanade bench footprint`.
type FootprintOptions struct {
	// Backend starts the backend child (`kanade bench backend`).
	Backend Command
	// AgentBinary is the kanade-agent to run and weigh. Empty: built from
	// the module in the working directory with
	// `go build -trimpath -ldflags "-s -w"` (go must be on PATH).
	AgentBinary string
	// AgentBinaryWindows is only weighed. Empty: built likewise for
	// windows/amd64 when go is on PATH, else its size is "na".
	AgentBinaryWindows string
	// Duration of the idle window (default 5 min).
	Duration time.Duration
	// Heartbeat is the agent's heartbeat interval (default 30 s), set in
	// the fleet config like an operator would.
	Heartbeat time.Duration
	// SampleEvery is how often RSS is read during the window (default
	// 1 s, at most a quarter of Duration).
	SampleEvery time.Duration
	// WorkDir holds the backend's data, the agent and the logs; default
	// the system temp dir.
	WorkDir string
	// Timeout bounds the builds and the start-up (agent connected, first
	// duties done, quiet); default 2 min.
	Timeout time.Duration
	// Keep keeps the work directory.
	Keep bool
	// Out receives the summary line; Log the progress (both required).
	Out io.Writer
	Log io.Writer
}

// FootprintResult is one agent footprint measurement. Its String is the
// summary line (keys in this order; the first five are those of the
// earlier scripts/footprint):
//
//	footprint idle_secs= rss_mib= cpu_pct= binary_linux_mib= binary_windows_mib=
//	          rss_max_mib= hwm_mib= heartbeats=
//
// One real kanade-agent process runs against the backend child with the
// fleet config's heartbeat_interval set to the heartbeat (30 s) and its
// first-start duties done before the window opens: inventory collected at
// once (inventory_jitter 0, stored by the backend), the running binary
// kept as last-good (healthy_after 1 s), and then a quiet second (no CPU
// tick). Over the window: rss_mib is VmRSS at its end, rss_max_mib the
// largest sampled VmRSS, cpu_pct the agent's user+system CPU over the
// window's wall time (in % of one core; /proc counts in 10 ms ticks, so
// the resolution is 1/duration — 0.003 % over 5 minutes), heartbeats the
// heartbeats it published. hwm_mib is the agent's VmHWM, its peak since it
// started (start-up and inventory included). Binary sizes are of the
// files as given or as built (stripped, -trimpath), in MiB.
type FootprintResult struct {
	Idle          time.Duration
	RSS, RSSMax   uint64
	HWM           uint64
	CPU           time.Duration
	BinaryLinux   int64 // bytes; -1 unknown
	BinaryWindows int64 // bytes; -1 unknown
	Heartbeats    int64
}

func (r FootprintResult) String() string {
	cpu := "na"
	if r.Idle > 0 {
		cpu = fmt.Sprintf("%.3f", float64(r.CPU)/float64(r.Idle)*100)
	}
	return fmt.Sprintf("footprint idle_secs=%.0f rss_mib=%.1f cpu_pct=%s binary_linux_mib=%s binary_windows_mib=%s rss_max_mib=%.1f hwm_mib=%.1f heartbeats=%d",
		r.Idle.Seconds(), float64(r.RSS)/(1<<20), cpu, fmtBinary(r.BinaryLinux), fmtBinary(r.BinaryWindows),
		float64(r.RSSMax)/(1<<20), float64(r.HWM)/(1<<20), r.Heartbeats)
}

func fmtBinary(b int64) string {
	if b < 0 {
		return "na"
	}
	return fmt.Sprintf("%.2f", float64(b)/(1<<20))
}

// footprintID is the agent's pc_id.
const footprintID = "footprint"

// agentPackage is what the default build builds.
const agentPackage = "github.com/kanade-project/kanade/cmd/kanade-agent"

func (o *FootprintOptions) defaults() error {
	if o.Backend.Path == "" {
		return errors.New("bench: no backend command")
	}
	if o.Out == nil || o.Log == nil {
		return errors.New("bench: Out and Log are required")
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Minute
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 30 * time.Second
	}
	if o.SampleEvery <= 0 {
		o.SampleEvery = time.Second
	}
	o.SampleEvery = max(min(o.SampleEvery, o.Duration/4), time.Millisecond)
	if o.WorkDir == "" {
		o.WorkDir = os.TempDir()
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	return nil
}

// Footprint runs one real agent idle for the duration and prints one
// FootprintResult line. Linux only (the figures come from /proc).
func Footprint(ctx context.Context, o FootprintOptions) error {
	res, err := RunFootprint(ctx, o)
	if err != nil {
		return fmt.Errorf("footprint: %w", err)
	}
	fmt.Fprintln(o.Out, res)
	return nil
}

// RunFootprint is Footprint without the printing.
func RunFootprint(ctx context.Context, o FootprintOptions) (res FootprintResult, err error) {
	if err := o.defaults(); err != nil {
		return res, err
	}
	if _, err := readProc(os.Getpid()); err != nil {
		return res, fmt.Errorf("bench: the footprint is read from /proc (Linux only): %w", err)
	}
	dir, err := os.MkdirTemp(o.WorkDir, "kanade-bench-footprint-")
	if err != nil {
		return res, fmt.Errorf("bench: work dir: %w", err)
	}
	logf := func(format string, a ...any) { fmt.Fprintf(o.Log, "bench footprint: "+format+"\n", a...) }
	var be *backend
	var nc *nats.Conn
	var agent *agentProc
	defer func() {
		if agent != nil {
			agent.stop(10 * time.Second)
		}
		if nc != nil {
			nc.Close()
		}
		if be != nil {
			be.stop(30 * time.Second)
		}
		if o.Keep || err != nil {
			logf("kept %s (backend.log, agent.log)", dir)
			return
		}
		os.RemoveAll(dir)
	}()
	sctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	// 1. The binaries.
	linuxBin, windowsBin, err := agentBinaries(sctx, o, dir, logf)
	if err != nil {
		return res, err
	}
	res.BinaryLinux, res.BinaryWindows = fileSize(linuxBin), fileSize(windowsBin)
	if res.BinaryLinux < 0 {
		return res, fmt.Errorf("bench: agent binary %s: not readable", linuxBin)
	}

	// 2. The backend and the fleet config the agent will read.
	listen, err := freeListen()
	if err != nil {
		return res, err
	}
	spec := backendSpec{cmd: o.Backend, dataDir: filepath.Join(dir, "backend"), listen: listen, token: randomToken(), logPath: logPath(dir)}
	if be, err = startBackend(sctx, spec, o.Timeout); err != nil {
		return res, err
	}
	api := newAPIClient(be.httpURL, spec.token)
	if nc, err = nats.Connect(be.natsURL, nats.Name("kanade-bench footprint")); err != nil {
		return res, fmt.Errorf("bench: connecting to the backend's broker: %w", err)
	}
	if err := setAgentConfig(sctx, nc, o.Heartbeat); err != nil {
		return res, err
	}
	var heartbeats atomic.Int64
	if _, err := nc.Subscribe(wire.SubjectHeartbeat(footprintID), func(*nats.Msg) { heartbeats.Add(1) }); err != nil {
		return res, fmt.Errorf("bench: heartbeat subscription: %w", err)
	}
	if err := nc.Flush(); err != nil {
		return res, fmt.Errorf("bench: heartbeat subscription: %w", err)
	}

	// 3. The agent: a copy of the binary in the work dir, because the
	// self-updater keeps its state (and a last-good copy) beside the
	// executable.
	if agent, err = startAgent(filepath.Join(dir, "agent"), linuxBin, be.natsURL); err != nil {
		return res, err
	}
	logf("agent started (pid %d); waiting for its first heartbeat, its inventory, its last-good copy and a quiet second", agent.pid())
	begin := time.Now()
	if err := agent.waitIdle(sctx, api, &heartbeats); err != nil {
		return res, err
	}
	logf("agent idle after %s; measuring for %s", time.Since(begin).Round(time.Millisecond), o.Duration)

	// 4. The window.
	s0, err := readProc(agent.pid())
	if err != nil {
		return res, fmt.Errorf("bench: reading the agent: %w", err)
	}
	hb0 := heartbeats.Load()
	res.RSSMax = s0.RSS
	w0 := time.Now()
	tick := time.NewTicker(o.SampleEvery)
	defer tick.Stop()
	end := time.NewTimer(o.Duration)
	defer end.Stop()
window:
	for {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-agent.exited:
			return res, agent.died()
		case <-end.C:
			break window
		case <-tick.C:
			s, err := readProc(agent.pid())
			if err != nil {
				return res, fmt.Errorf("bench: reading the agent: %w", err)
			}
			res.RSSMax = max(res.RSSMax, s.RSS)
		}
	}
	s1, err := readProc(agent.pid())
	res.Idle = time.Since(w0)
	if err != nil {
		return res, fmt.Errorf("bench: reading the agent: %w", err)
	}
	res.RSS, res.HWM, res.CPU = s1.RSS, s1.HWM, s1.CPU-s0.CPU
	res.RSSMax = max(res.RSSMax, s1.RSS)
	res.Heartbeats = heartbeats.Load() - hb0
	return res, nil
}

// agentBinaries returns the agent binary to run and the Windows one to
// weigh (empty when there is none), building what was not given.
func agentBinaries(ctx context.Context, o FootprintOptions, dir string, logf func(string, ...any)) (linux, windows string, err error) {
	linux, windows = o.AgentBinary, o.AgentBinaryWindows
	if linux != "" && windows != "" {
		return linux, windows, nil
	}
	goBin, lookErr := exec.LookPath("go")
	if linux == "" {
		if lookErr != nil {
			return "", "", fmt.Errorf("bench: no --agent-binary and no go on PATH to build one: %w", lookErr)
		}
		linux = filepath.Join(dir, "bin", "kanade-agent")
		logf("building %s (%s/%s, stripped)", agentPackage, runtime.GOOS, runtime.GOARCH)
		if err := goBuild(ctx, goBin, linux, nil); err != nil {
			return "", "", err
		}
	}
	if windows == "" {
		if lookErr != nil {
			logf("no go on PATH: the Windows binary's size is unknown (give --agent-binary-windows)")
			return linux, "", nil
		}
		windows = filepath.Join(dir, "bin", "kanade-agent.exe")
		logf("building %s (windows/amd64, stripped)", agentPackage)
		if err := goBuild(ctx, goBin, windows, []string{"GOOS=windows", "GOARCH=amd64"}); err != nil {
			return "", "", err
		}
	}
	return linux, windows, nil
}

// goBuild builds the agent as a release is built (scripts/footprint's
// flags: no paths, no symbol table, no DWARF).
func goBuild(ctx context.Context, goBin, out string, env []string) error {
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, agentPackage)
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("bench: go build %s %v (run from the kanade module, or give --agent-binary): %w\n%s", agentPackage, env, err, b)
	}
	return nil
}

// fileSize is the size of path, -1 when unknown.
func fileSize(path string) int64 {
	if path == "" {
		return -1
	}
	st, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return st.Size()
}

// setAgentConfig writes the agent's PC layer: the heartbeat, and the first
// inventory at once so that it is over before the window opens.
func setAgentConfig(ctx context.Context, nc *nats.Conn, heartbeat time.Duration) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	kv, err := js.KeyValue(ctx, wire.BucketAgentConfig)
	if err != nil {
		return fmt.Errorf("bench: bucket %s: %w", wire.BucketAgentConfig, err)
	}
	layer, err := json.Marshal(map[string]string{"heartbeat_interval": heartbeat.String(), "inventory_jitter": "0s"})
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, wire.ConfigKeyPC(footprintID), layer); err != nil {
		return fmt.Errorf("bench: writing the agent's config layer: %w", err)
	}
	return nil
}

// agentProc is the running kanade-agent.
type agentProc struct {
	cmd     *exec.Cmd
	exe     string
	logPath string
	exited  chan struct{}
	err     error // valid once exited is closed
}

// startAgent copies bin into dir and runs it with an agent.toml there.
func startAgent(dir, bin, natsURL string) (*agentProc, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bench: agent dir: %w", err)
	}
	exe := filepath.Join(dir, "kanade-agent")
	if err := copyExecutable(bin, exe); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "agent.toml")
	toml := fmt.Sprintf("[agent]\nid = %q\nnats_urls = [%q]\ndata_dir = %q\n\n[log]\nlevel = \"warn\"\n\n[update]\nhealthy_after = \"1s\"\n",
		footprintID, natsURL, filepath.Join(dir, "data"))
	if err := os.WriteFile(conf, []byte(toml), 0o600); err != nil {
		return nil, fmt.Errorf("bench: agent config: %w", err)
	}
	logPath := filepath.Join(filepath.Dir(dir), "agent.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("bench: agent log: %w", err)
	}
	cmd := exec.Command(exe, "--config", conf)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("bench: starting the agent: %w", err)
	}
	a := &agentProc{cmd: cmd, exe: exe, logPath: logPath, exited: make(chan struct{})}
	go func() {
		a.err = cmd.Wait()
		logf.Close()
		close(a.exited)
	}()
	return a, nil
}

func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("bench: agent binary: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return fmt.Errorf("bench: agent binary copy: %w", err)
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("bench: agent binary copy: %w", err)
	}
	return nil
}

func (a *agentProc) pid() int { return a.cmd.Process.Pid }

func (a *agentProc) died() error {
	return fmt.Errorf("bench: the agent exited (%v); see %s", a.err, a.logPath)
}

// waitIdle returns once the agent's first-start duties are over — the
// backend has its heartbeat and its inventory, the updater has marked
// this binary healthy (boot.json beside the executable) — and a whole
// second then passed without a CPU tick.
func (a *agentProc) waitIdle(ctx context.Context, api *apiClient, heartbeats *atomic.Int64) error {
	var hb, inv, healthy bool
	err := poll(ctx, 250*time.Millisecond, func() (bool, error) {
		select {
		case <-a.exited:
			return false, a.died()
		default:
		}
		hb = hb || heartbeats.Load() > 0
		if hb && !inv {
			var sections any
			inv = api.get(ctx, "/api/inventory/"+footprintID, &sections) == nil
		}
		if !healthy {
			healthy = bootHealthy(a.exe)
		}
		return hb && inv && healthy, nil
	})
	if err != nil {
		return fmt.Errorf("bench: agent not started (heartbeat %t, inventory stored %t, healthy %t): %w", hb, inv, healthy, err)
	}
	const window = time.Second
	for {
		s0, err := readProc(a.pid())
		if err != nil {
			return fmt.Errorf("bench: reading the agent: %w", err)
		}
		t := time.NewTimer(window)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("bench: the agent never had a quiet second: %w", ctx.Err())
		case <-a.exited:
			t.Stop()
			return a.died()
		case <-t.C:
		}
		s1, err := readProc(a.pid())
		if err != nil {
			return fmt.Errorf("bench: reading the agent: %w", err)
		}
		if s1.CPU == s0.CPU {
			return nil
		}
	}
}

// bootHealthy reads the self-updater's boot sentinel beside exe
// (<exe>.update/boot.json): healthy once the running binary was kept as
// last-good.
func bootHealthy(exe string) bool {
	base := strings.TrimSuffix(filepath.Base(exe), filepath.Ext(exe))
	b, err := os.ReadFile(filepath.Join(filepath.Dir(exe), base+".update", "boot.json"))
	if err != nil {
		return false
	}
	var st struct {
		Healthy bool `json:"healthy"`
	}
	return json.Unmarshal(b, &st) == nil && st.Healthy
}

// stop asks the agent to shut down (an interrupt, as the service manager
// would) and kills it if it has not exited within timeout.
func (a *agentProc) stop(timeout time.Duration) {
	_ = a.cmd.Process.Signal(os.Interrupt)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-a.exited:
	case <-t.C:
		_ = a.cmd.Process.Kill()
		<-a.exited
	}
}
