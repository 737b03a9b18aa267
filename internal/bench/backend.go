package bench

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/kanade-project/kanade/internal/broker"
	"github.com/kanade-project/kanade/internal/logging"
	"github.com/kanade-project/kanade/internal/server"
	"github.com/kanade-project/kanade/internal/serverconfig"
)

// readyPrefix starts the one line a backend child prints on stdout once
// it serves: "kanade-bench-backend ready nats=<url> http=<url>", followed
// by " monitor=<url>" with --monitor.
const readyPrefix = "kanade-bench-backend ready "

// BackendMain is the backend child: `kanade bench backend` (hidden). It
// runs server.Run exactly as `kanade server` does — embedded broker,
// bootstrap, SQLite projection, jobs, scheduler, HTTP API — with the API
// token from KANADE_API_TOKEN and no dev agent, prints the ready line, and
// stops when its stdin ends (the bench closed it, or died). It returns the
// process exit code.
//
// With --monitor the child starts the broker itself — the same
// broker.Start, options and data dir server.Run would use — with the
// nats-server monitoring port open on loopback (server.Run has no way to
// open it), and hands server.Run an external-broker config pointing at it.
// Nothing else changes: server.Run talks to its broker over a loopback
// socket either way. The rollout benchmark reads the broker's out_bytes
// from <monitor>/varz; the others do not pass the flag.
func BackendMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kanade bench backend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o server.Options
	var logLevel string
	fs.StringVar(&o.DataDir, "data-dir", "", "data dir of the broker and the database (required)")
	fs.StringVar(&o.NATSListen, "nats-listen", "127.0.0.1:4222", "HOST:PORT of the embedded broker")
	fs.StringVar(&o.HTTPListen, "http-listen", "127.0.0.1:0", "HOST:PORT of the HTTP API")
	fs.StringVar(&logLevel, "log-level", "warn", "debug | info | warn | error")
	monitor := fs.Bool("monitor", false, "start the broker here with its monitoring port on loopback (printed as monitor=<url>)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.DataDir == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "kanade bench backend: --data-dir is required and nothing else is accepted")
		return 2
	}
	level, err := logging.ParseLevel(logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "kanade bench backend:", err)
		return 2
	}
	o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		serveControl(stdin, stderr)
		cancel()
	}()
	monitorSuffix := ""
	if *monitor {
		b, err := startMonitoredBroker(ctx, &o)
		if err != nil {
			fmt.Fprintln(stderr, "kanade bench backend:", err)
			return 1
		}
		defer b.Shutdown()
		monitorSuffix = " monitor=http://" + b.Server().MonitorAddr().String()
	}
	o.Ready = func(natsURL, httpURL string) {
		fmt.Fprintf(stdout, "%snats=%s http=%s%s\n", readyPrefix, natsURL, httpURL, monitorSuffix)
	}
	if err := server.Run(ctx, o); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "kanade bench backend:", err)
		return 1
	}
	return 0
}

// startMonitoredBroker starts the broker as server.Run would (same
// listen address, data dir, token and logger) plus the monitoring port,
// and points o at it as an external broker.
func startMonitoredBroker(ctx context.Context, o *server.Options) (*broker.Broker, error) {
	secrets, err := serverconfig.Default().LoadSecrets()
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	b, err := broker.Start(ctx, broker.Options{
		Listen: o.NATSListen, DataDir: filepath.Join(o.DataDir, "broker"), Token: secrets.NATSToken,
		Logger: o.Logger.With("component", "broker"),
		Configure: func(so *natsserver.Options) {
			so.HTTPHost = "127.0.0.1"
			so.HTTPPort = natsserver.RANDOM_PORT
		},
	})
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	cfg, err := serverconfig.Parse(fmt.Appendf(nil, "[nats]\nurls = [%q]\n", b.ClientURL()))
	if err != nil {
		b.Shutdown()
		return nil, fmt.Errorf("external broker config: %w", err)
	}
	o.Config, o.NATSListen = cfg, ""
	return b, nil
}

// Control lines the bench writes on the child's stdin; the end of stdin
// stops the child.
const (
	ctlProfileStart = "cpu-profile-start " // + path
	ctlProfileStop  = "cpu-profile-stop"
)

// serveControl obeys control lines until stdin ends.
func serveControl(stdin io.Reader, stderr io.Writer) {
	var prof *os.File
	stop := func() {
		if prof != nil {
			pprof.StopCPUProfile()
			prof.Close()
			prof = nil
		}
	}
	defer stop()
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ctlProfileStart):
			stop()
			f, err := os.Create(strings.TrimPrefix(line, ctlProfileStart))
			if err == nil {
				if err = pprof.StartCPUProfile(f); err != nil {
					f.Close()
				} else {
					prof = f
				}
			}
			if err != nil {
				fmt.Fprintln(stderr, "kanade bench backend: CPU profile:", err)
			}
		case line == ctlProfileStop:
			stop()
		}
	}
}

// control sends one control line to the child (best effort; nothing for
// a nil backend).
func (b *backend) control(line string) {
	if b != nil {
		_, _ = io.WriteString(b.stdin, line+"\n")
	}
}

// Command is how the bench starts its backend child: Path with Args, then
// the backend's own flags; Env is added to a cleaned environment.
type Command struct {
	Path string
	Args []string
	Env  []string
}

// backend is a running backend child.
type backend struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	natsURL string
	httpURL string
	// monitorURL is the broker's monitoring endpoint (spec.monitor only).
	monitorURL string
	// ready is when the child printed its ready line.
	ready   time.Time
	logPath string
	exited  chan struct{}
	err     error // the child's exit, valid once exited is closed
}

// backendSpec is everything needed to (re)start the same backend.
type backendSpec struct {
	cmd     Command
	dataDir string
	listen  string // NATS host:port, stable across restarts
	token   string // API token
	logPath string
	// monitor starts the child with --monitor.
	monitor bool
}

// startBackend starts the child and waits for its ready line.
func startBackend(ctx context.Context, s backendSpec, timeout time.Duration) (*backend, error) {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("bench: backend log: %w", err)
	}
	args := append(append([]string{}, s.cmd.Args...), "--data-dir", s.dataDir, "--nats-listen", s.listen, "--http-listen", "127.0.0.1:0")
	if s.monitor {
		args = append(args, "--monitor")
	}
	cmd := exec.Command(s.cmd.Path, args...)
	cmd.Env = append(append(cleanEnv(), s.cmd.Env...), "KANADE_API_TOKEN="+s.token)
	cmd.Stderr = logf
	cmd.SysProcAttr = childAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("bench: starting the backend %s: %w", s.cmd.Path, err)
	}
	b := &backend{cmd: cmd, stdin: stdin, exited: make(chan struct{}), logPath: s.logPath}
	lines := make(chan string, 1)
	var once sync.Once
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), readyPrefix) {
				once.Do(func() { lines <- sc.Text() })
			}
		}
	}()
	go func() {
		b.err = cmd.Wait()
		logf.Close()
		close(b.exited)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case line := <-lines:
		b.ready = time.Now()
		for _, kv := range strings.Fields(strings.TrimPrefix(line, readyPrefix)) {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "nats":
				b.natsURL = v
			case "http":
				b.httpURL = v
			case "monitor":
				b.monitorURL = v
			}
		}
		if b.natsURL == "" || b.httpURL == "" || (s.monitor && b.monitorURL == "") {
			b.kill()
			return nil, fmt.Errorf("bench: backend ready line without URLs: %q", line)
		}
		return b, nil
	case <-b.exited:
		return nil, fmt.Errorf("bench: the backend exited before it was ready (%v); see %s", b.err, s.logPath)
	case <-t.C:
		b.kill()
		return nil, fmt.Errorf("bench: the backend was not ready after %s; see %s", timeout, s.logPath)
	case <-ctx.Done():
		b.kill()
		return nil, ctx.Err()
	}
}

// cleanEnv is this environment without KANADE_* variables: the child's
// credentials and addresses are the bench's choice alone.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KANADE_") {
			out = append(out, kv)
		}
	}
	return out
}

// pid is the child's process id.
func (b *backend) pid() int { return b.cmd.Process.Pid }

// alive reports whether the child is still running.
func (b *backend) alive() bool {
	select {
	case <-b.exited:
		return false
	default:
		return true
	}
}

// died is the error for a child that exited while it was needed.
func (b *backend) died() error {
	return fmt.Errorf("bench: the backend exited (%v); see %s", b.err, b.logPath)
}

// kill ends the child at once (SIGKILL on Unix: a crash, not a shutdown)
// and waits for it.
func (b *backend) kill() {
	_ = b.cmd.Process.Kill()
	<-b.exited
}

// stop asks the child to shut down (end of stdin) and kills it if it has
// not exited within timeout.
func (b *backend) stop(timeout time.Duration) {
	_ = b.stdin.Close()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-b.exited:
	case <-t.C:
		b.kill()
	}
}

// freeListen picks a free loopback port for the broker: it must be fixed
// before the first start, since a restart reuses it.
func freeListen() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// logPath is where a run keeps the backend's log.
func logPath(dir string) string { return filepath.Join(dir, "backend.log") }
