package sim

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/kanade-project/kanade/internal/logging"
)

const usage = `kanade-sim runs a fleet of simulated kanade agents (the real agent code,
one NATS connection each) against a bootstrapped broker, and reports its
own memory per agent and its connections.

  kanade server --dev --data-dir /tmp/kanade &     # or any kanade server
  kanade-sim --agents 1000 --ramp 200 --groups 10 --data-dir /dev/shm/kanade-sim

Agent i (0-based) is sim-<i+1, five digits> and, with --groups G, joins group
simgrp-<i mod G> through KV agent_groups. Each agent keeps its outbox and
ledger under --data-dir/<pc_id>: put it on tmpfs (/dev/shm) unless the disk
is what you want to measure. The broker token comes from KANADE_NATS_TOKEN.
Ctrl-C stops every agent (outboxes flushed) and exits.

Flags:
`

// Main is kanade-sim's command line; it returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kanade-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var o Options
	var natsURLs, execMode, logLevel, heapProfile string
	var reportEvery, duration time.Duration
	defURL := os.Getenv("KANADE_NATS_URL")
	if defURL == "" {
		defURL = "nats://127.0.0.1:4222"
	}
	fs.IntVar(&o.Agents, "agents", 100, "number of simulated agents")
	fs.IntVar(&o.Groups, "groups", 0, "spread the agents over this many groups (agent i joins simgrp-<i mod G>); 0: no groups")
	fs.DurationVar(&o.Heartbeat, "heartbeat", 30*time.Second, "heartbeat interval of every agent")
	fs.Float64Var(&o.Ramp, "ramp", 0, "agents started per second; 0 starts all at once")
	fs.StringVar(&natsURLs, "nats", defURL, "broker URL(s), comma-separated (env KANADE_NATS_URL)")
	fs.StringVar(&execMode, "exec", string(ExecNoop), "what agents do with a command: noop (exit 0 at once), echo (the script as stdout) or real (run it)")
	fs.StringVar(&o.DataDir, "data-dir", "", "per-agent outbox and ledger under DIR/<pc_id> (default: a temporary dir, removed at exit); tmpfs advised")
	fs.StringVar(&o.IDPrefix, "id-prefix", "sim-", "pc_id prefix")
	fs.DurationVar(&reportEvery, "report-every", 10*time.Second, "print a report line this often")
	fs.DurationVar(&duration, "duration", 0, "stop after this long; 0 runs until interrupted")
	fs.StringVar(&logLevel, "log-level", "warn", "agents' log level: debug | info | warn | error")
	fs.StringVar(&heapProfile, "heap-profile", "", "write a heap profile (go tool pprof) to this file before stopping")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kanade-sim: unexpected arguments %q\n", fs.Args())
		return 2
	}
	var err error
	if o.Exec, err = ParseExecMode(execMode); err != nil {
		fmt.Fprintln(stderr, "kanade-sim:", err)
		return 2
	}
	level, err := logging.ParseLevel(logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "kanade-sim:", err)
		return 2
	}
	if reportEvery <= 0 {
		fmt.Fprintln(stderr, "kanade-sim: --report-every must be positive")
		return 2
	}
	o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	o.NATSURLs = strings.Split(natsURLs, ",")
	o.Token = os.Getenv("KANADE_NATS_TOKEN")
	if limit, err := RaiseFileLimit(); err != nil {
		fmt.Fprintln(stderr, "kanade-sim: warning:", err)
	} else if limit > 0 && uint64(o.Agents)+64 > limit {
		fmt.Fprintf(stderr, "kanade-sim: warning: %d agents need about %d open files; the limit is %d\n", o.Agents, o.Agents+64, limit)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	f, err := Start(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, "kanade-sim:", err)
		return 1
	}
	fmt.Fprintf(stdout, "kanade-sim: starting %d agents against %s (exec=%s, heartbeat=%s, ramp=%g/s, data dir %s)\n",
		o.Agents, natsURLs, o.Exec, o.Heartbeat, o.Ramp, f.o.DataDir)
	f.WriteReports(ctx, stdout, reportEvery)
	fmt.Fprintln(stdout, f.Report())
	if heapProfile != "" {
		if err := writeHeapProfile(heapProfile); err != nil {
			fmt.Fprintln(stderr, "kanade-sim:", err)
		}
	}
	fmt.Fprintln(stdout, "kanade-sim: stopping")
	f.Stop()
	if err := f.Err(); err != nil {
		fmt.Fprintln(stderr, "kanade-sim:", err)
		return 1
	}
	return 0
}

func writeHeapProfile(path string) error {
	fh, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	if err := pprof.Lookup("heap").WriteTo(fh, 0); err != nil {
		fh.Close()
		return fmt.Errorf("heap profile: %w", err)
	}
	return fh.Close()
}
