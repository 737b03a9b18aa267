// Package cli is the kanade operator command line (a kubectl-style single
// entry point) and the `kanade server` command. Each subcommand lives in its
// own file; they share the connection flags defined here.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/kanade-project/kanade/internal/buildinfo"
	"github.com/kanade-project/kanade/internal/fleetclient"
)

// Environment variables read by the CLI.
const (
	EnvServer = "KANADE_NATS_URL"
	EnvToken  = "KANADE_NATS_TOKEN"
)

// DefaultServer is the broker URL used when neither --server nor
// KANADE_NATS_URL is given.
const DefaultServer = "nats://127.0.0.1:4222"

// exitError carries a process exit code through cobra.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// Exit codes of the CLI besides a script's own.
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2
	exitNoAnswer = 3
)

type app struct {
	in             io.Reader
	out, errOut    io.Writer
	server         string
	nkeyFile       string
	connectTimeout time.Duration
	natsCA         string // --nats-ca (tls.go)
	commandKey     string
}

// Main runs the CLI and returns the process exit code.
func Main(args []string, in io.Reader, out, errOut io.Writer) int {
	a := &app{in: in, out: out, errOut: errOut}
	root := a.root()
	root.SetArgs(args)
	root.SetIn(in)
	root.SetOut(out)
	root.SetErr(errOut)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(errOut, "kanade:", ee.msg)
		}
		return ee.code
	}
	fmt.Fprintln(errOut, "kanade:", err)
	if strings.Contains(err.Error(), "unknown flag") || strings.Contains(err.Error(), "arg(s)") || strings.Contains(err.Error(), "unknown command") {
		return exitUsage
	}
	return exitFailure
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "kanade",
		Short: "Manage a fleet of Windows and Linux endpoints over NATS",
		Long: `kanade runs scripts on your endpoints, shows who is online, and rolls out agent
updates — all through one NATS server with JetStream.

Start a working system on this machine (embedded broker + a local agent):
  kanade server --dev

Then, from another terminal:
  kanade ping <pc>
  kanade run <pc> -- echo hi
  kanade run --all -- hostname`,
		Version:       buildinfo.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	def := os.Getenv(EnvServer)
	if def == "" {
		def = DefaultServer
	}
	root.PersistentFlags().StringVarP(&a.server, "server", "s", def, "broker URL(s), comma-separated (env "+EnvServer+"); the token comes from "+EnvToken)
	root.PersistentFlags().DurationVar(&a.connectTimeout, "connect-timeout", 5*time.Second, "how long to try to reach the broker")
	a.addTLSFlags(root)
	a.addNKeyFlag(root)
	root.PersistentFlags().StringVar(&a.commandKey, "command-key", "", commandKeyFlagHelp)
	root.AddCommand(a.runCmd(), a.pingCmd(), a.jetstreamCmd(), a.serverCmd(), a.versionCmd())
	root.AddCommand(a.stopCmds()...)
	root.AddCommand(a.inventoryCmd())
	root.AddCommand(a.configCmd(), a.agentCmd())
	root.AddCommand(a.releaseKeyCmd(), a.commandKeyCmd())
	root.AddCommand(a.natsCmd())
	root.AddCommand(a.apiCmds()...)
	root.AddCommand(a.benchCmd())
	root.AddCommand(a.tlsCmd())
	return root
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this kanade binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(a.out, buildinfo.Version)
			return nil
		},
	}
}

// connect opens a connection to the broker, failing fast (the CLI is
// interactive: an operator wants an error, not a silent retry).
func (a *app) connect(ctx context.Context) (*fleetclient.Client, func(), error) {
	opts := []nats.Option{nats.Name("kanade-cli"), nats.Timeout(a.connectTimeout)}
	if t := os.Getenv(EnvToken); t != "" {
		opts = append(opts, nats.Token(t))
	}
	opts, err := a.withNATSCA(opts)
	if err != nil {
		return nil, nil, err
	}
	nkeyOpts, err := a.nkeyOptions()
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts, nkeyOpts...)
	nc, err := nats.Connect(a.server, opts...)
	if err != nil {
		if hint := tlsHint(err, "the broker", "--nats-ca", EnvNATSCA); hint != "" {
			return nil, nil, fmt.Errorf("cannot connect to the broker at %s: %w (%s)", a.server, err, hint)
		}
		return nil, nil, fmt.Errorf("cannot reach the broker at %s: %w (start one with `kanade server --dev`, or pass --server / %s)", a.server, err, EnvServer)
	}
	c, err := fleetclient.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return c, nc.Close, nil
}
