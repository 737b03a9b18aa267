package cli

import (
	"fmt"
	"os"
	"strconv"
	"strings"

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
process. One summary line of key=value pairs is printed per fleet size.

Linux is the target (open-file limit raised to the hard limit, the child's
CPU and memory from /proc). Agents keep their outboxes under /dev/shm when
it exists. Run on a quiet machine: every other process competes for the
same cores.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(a.benchFanoutCmd(), a.benchStormCmd(), a.benchBackendCmd())
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
