package cli

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kanade-project/kanade/internal/bench"
)

// benchCmd is `kanade bench`: scale benchmarks on this machine, each
// beside its floor (internal/bench).
func (a *app) benchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Scale benchmarks on this machine (simulated fleet against a real backend)",
		Long: `Scale benchmarks, each measured beside the physical floor of the transport in
the same run. The broker and the backend run in a child process (this binary,
"kanade bench backend"), exactly as "kanade server" runs them; the simulated
agents (the real agent code, one connection each, see kanade-sim) run in this
process. One summary line of key=value pairs is printed per measurement
(rollout and footprint: see their help; plot draws the fanout lines).

Linux is the target (open-file limit raised to the hard limit, the child's
CPU and memory from /proc). Agents keep their outboxes under /dev/shm when
it exists. Run on a quiet machine: every other process competes for the
same cores.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(a.benchFanoutCmd(), a.benchStormCmd(), a.benchRolloutCmd(), a.benchFootprintCmd(), a.benchPlotCmd(), a.benchBackendCmd())
	return cmd
}

func benchFlags(cmd *cobra.Command, o *bench.Options, agents *string) {
	fl := cmd.Flags()
	fl.StringVar(agents, "agents", "1000,5000,10000", "fleet sizes, comma-separated; a fresh backend and fleet for each")
	fl.Float64Var(&o.Ramp, "ramp", 500, "agents started per second")
	fl.DurationVar(&o.Heartbeat, "heartbeat", 0, "agents' heartbeat interval (default 30s)")
	fl.StringVar(&o.WorkDir, "work-dir", "", "where the backend keeps its data and the logs (default: the temp dir)")
	fl.StringVar(&o.AgentDir, "agent-dir", "", "where the agents keep outboxes and ledgers (default /dev/shm when present)")
	fl.DurationVar(&o.Timeout, "timeout", 0, "bound of each phase (default 5m)")
	fl.BoolVar(&o.Keep, "keep", false, "keep the work directories and logs")
	fl.StringVar(&o.CPUProfile, "cpu-profile", "", "write a CPU profile of the agents' process during the measurement to this file")
}

// benchRun fills what every benchmark shares and runs it.
func (a *app) benchRun(cmd *cobra.Command, o bench.Options, agents string, run func(*cobra.Command, bench.Options) error) error {
	for _, s := range strings.Split(agents, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return &exitError{exitUsage, fmt.Sprintf("--agents %q: expected positive numbers separated by commas", agents)}
		}
		o.Agents = append(o.Agents, n)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: locating this binary to start the backend: %w", err)
	}
	o.Backend = bench.Command{Path: exe, Args: []string{"bench", "backend"}}
	o.Out, o.Log = a.out, a.errOut
	return run(cmd, o)
}

func (a *app) benchFanoutCmd() *cobra.Command {
	var o bench.Options
	var agents string
	cmd := &cobra.Command{
		Use:   "fanout",
		Short: "One broadcast command to N agents, beside N plain NATS request/reply responders",
		Long: `For each fleet size N: the floor (N plain NATS connections subscribed to one
subject, replying at once; time from one publish to all N replies, median of
3) and then N simulated agents with the no-op executor and one broadcast
command published as the API publishes it. Printed per N:

  fanout agents=N floor_s= acked_s= ratio= sql_s= sql_ratio= p50_ms= p99_ms= …

acked_s: until every result is stored in RESULTS (JetStream timestamps);
sql_s: until the API counts every result in SQLite; ratio and sql_ratio are
over floor_s; p50/p99: per-agent latency (result stored − publish); then the
backend's CPU and RSS and the simulator's memory per agent.`,
		Example: `  kanade bench fanout --agents 1000,5000,10000`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.benchRun(cmd, o, agents, func(cmd *cobra.Command, o bench.Options) error {
				return bench.Fanout(cmd.Context(), o)
			})
		},
	}
	benchFlags(cmd, &o, &agents)
	cmd.Flags().IntVar(&o.FloorRounds, "floor-rounds", 3, "floor fan-outs timed; the median is the floor")
	return cmd
}

func (a *app) benchStormCmd() *cobra.Command {
	var o bench.Options
	var agents string
	cmd := &cobra.Command{
		Use:   "storm",
		Short: "Kill and restart the broker under N connected agents; time until all are back",
		Long: `For each fleet size N: N simulated agents connected, then the backend child
(broker included) is killed (SIGKILL) and started again on the same port and
data dir. Printed per N:

  storm agents=N online_s= broker_peak_rss_mib= crashed= restart_s= sockets_s= dials= backend_cpu_s=

online_s: from the restart until the backend received a heartbeat from every
agent; broker_peak_rss_mib: the new child's peak resident set (VmHWM).`,
		Example: `  kanade bench storm --agents 10000`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.benchRun(cmd, o, agents, func(cmd *cobra.Command, o bench.Options) error {
				return bench.Storm(cmd.Context(), o)
			})
		},
	}
	benchFlags(cmd, &o, &agents)
	return cmd
}

func (a *app) benchRolloutCmd() *cobra.Command {
	var o bench.RolloutOptions
	var agents, size, jitters string
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "N agents download and verify one signed release from the object store, with jitter",
		Long: `For each fleet size N and each jitter: a fresh backend child, a release of
--size random bytes published to agent_releases signed with a fresh release
key, N NATS connections (one per agent, connected first), then every agent
downloads and verifies the release as the agent's updater does (record,
signature, size, SHA-256; the bytes go to the hasher, not to a staging file),
each after a uniform random delay in [0, jitter). Printed per N and jitter:

  rollout agents=N jitter_s= size_mib= total_s= peak_concurrent= egress_mib= broker_peak_rss_mib= …

total_s: until the last download verified; peak_concurrent: most downloads
in flight at once; egress_mib: growth of the broker's out_bytes (nats-server
monitoring) during the rollout; broker_peak_rss_mib: the backend child's
peak resident set (VmHWM).`,
		Example: `  kanade bench rollout --agents 1000,10000 --size 12MiB --jitter 0,30s`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.Size, err = bench.ParseSize(size); err != nil {
				return &exitError{exitUsage, "--size: " + err.Error()}
			}
			o.Jitters = nil
			for _, s := range strings.Split(jitters, ",") {
				d, err := time.ParseDuration(strings.TrimSpace(s))
				if err != nil || d < 0 {
					return &exitError{exitUsage, fmt.Sprintf("--jitter %q: expected durations separated by commas (0,30s)", jitters)}
				}
				o.Jitters = append(o.Jitters, d)
			}
			return a.benchRun(cmd, o.Options, agents, func(cmd *cobra.Command, bo bench.Options) error {
				o.Options = bo
				return bench.Rollout(cmd.Context(), o)
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&agents, "agents", "1000,10000", "fleet sizes, comma-separated; a fresh backend for each size and jitter")
	fl.StringVar(&size, "size", "12MiB", "release size (B, KiB, MiB, GiB)")
	fl.StringVar(&jitters, "jitter", "0,30s", "rollout jitters, comma-separated; one measurement each")
	fl.StringVar(&o.WorkDir, "work-dir", "", "where the backend keeps its data and the logs (default: the temp dir)")
	fl.DurationVar(&o.Timeout, "timeout", 0, "bound of each phase (default 5m; the rollout gets the jitter on top)")
	fl.BoolVar(&o.Keep, "keep", false, "keep the work directories and logs")
	return cmd
}

func (a *app) benchFootprintCmd() *cobra.Command {
	var o bench.FootprintOptions
	cmd := &cobra.Command{
		Use:   "footprint",
		Short: "Idle RSS and CPU of one real kanade-agent process, and the agent's binary sizes",
		Long: `Runs one real kanade-agent process against a backend child with the fleet
config's heartbeat_interval at --heartbeat, waits until its first-start
duties are over (first heartbeat, inventory stored, last-good copy made, then
a second without CPU), and reads its RSS and CPU from /proc over --duration.
Printed:

  footprint idle_secs= rss_mib= cpu_pct= binary_linux_mib= binary_windows_mib= rss_max_mib= hwm_mib= heartbeats=

Without --agent-binary the agent is built from the kanade module in the
working directory with go build -trimpath -ldflags "-s -w" (go on PATH); the
Windows binary likewise (GOOS=windows GOARCH=amd64) unless
--agent-binary-windows is given. Linux only.`,
		Example: `  kanade bench footprint --duration 5m`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("bench: locating this binary to start the backend: %w", err)
			}
			o.Backend = bench.Command{Path: exe, Args: []string{"bench", "backend"}}
			o.Out, o.Log = a.out, a.errOut
			return bench.Footprint(cmd.Context(), o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.AgentBinary, "agent-binary", "", "kanade-agent to run and weigh (default: build it, stripped)")
	fl.StringVar(&o.AgentBinaryWindows, "agent-binary-windows", "", "kanade-agent.exe to weigh (default: build it when go is on PATH)")
	fl.DurationVar(&o.Duration, "duration", 5*time.Minute, "idle window")
	fl.DurationVar(&o.Heartbeat, "heartbeat", 30*time.Second, "agent's heartbeat interval")
	fl.StringVar(&o.WorkDir, "work-dir", "", "where the backend, the agent and the logs live (default: the temp dir)")
	fl.DurationVar(&o.Timeout, "timeout", 0, "bound of the builds and of the agent's start-up (default 2m)")
	fl.BoolVar(&o.Keep, "keep", false, "keep the work directory and logs")
	return cmd
}

func (a *app) benchPlotCmd() *cobra.Command {
	var in, out string
	var width, height int
	cmd := &cobra.Command{
		Use:   "plot --in RESULTS --out PNG",
		Short: "Draw per-agent fan-out latency (p50, p99) and the floor against N as a PNG",
		Long: `Reads the summary lines of a results file (what kanade bench prints; other
lines are ignored) and draws, from the fanout lines, p50_ms and p99_ms and the
floor (floor_s, in ms) against the fleet size. When a size appears in more
than one line, the last one counts.`,
		Example: `  kanade bench plot --in bench-results.txt --out docs/bench-fanout.png`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" || out == "" {
				return &exitError{exitUsage, "--in and --out are required"}
			}
			return bench.PlotFile(in, out, bench.PlotOptions{Width: width, Height: height})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&in, "in", "", "results file with fanout summary lines")
	fl.StringVar(&out, "out", "", "PNG to write")
	fl.IntVar(&width, "width", 800, "image width in pixels")
	fl.IntVar(&height, "height", 500, "image height in pixels")
	return cmd
}

// benchBackendCmd is the child the benchmarks start; not for operators.
func (a *app) benchBackendCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "backend",
		Short:              "The benchmarks' backend child (internal)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := bench.BackendMain(cmd.Context(), args, a.in, a.out, a.errOut); code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
}
