// Package agentcmd is the command line of kanade-agent: flag parsing, config
// loading, logging set-up and the hand-over to the service manager. It keeps
// cmd/kanade-agent a one-line main and lets tests drive the real entry point.
package agentcmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/agentconfig"
	"github.com/kanade-project/kanade/internal/buildinfo"
	"github.com/kanade-project/kanade/internal/logging"
	"github.com/kanade-project/kanade/internal/selfupdate"
	"github.com/kanade-project/kanade/internal/service"
)

// Exit codes of the agent process.
const (
	ExitOK     = 0
	ExitError  = 1
	ExitConfig = 2
	// ExitRestart asks the service manager to start the agent again (after
	// a self-update swap).
	ExitRestart = 64
)

// Main runs the agent command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "service" {
		return serviceMain(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("kanade-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "path of agent.toml (default: $"+agentconfig.EnvConfig+", then "+agentconfig.DefaultPath()+")")
	version := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `kanade-agent %s — the kanade endpoint daemon

Usage:
  kanade-agent [--config FILE]   run (as the Windows service %s when started by the SCM)
  kanade-agent --version         print the version
  kanade-agent service …         install|uninstall|start|stop|status the service (see kanade-agent service --help)

Flags:
`, buildinfo.Version, service.Name)
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\n%s", agentconfig.Help())
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return ExitOK
		}
		return ExitConfig
	}
	if *version {
		fmt.Fprintln(stdout, buildinfo.Version)
		return ExitOK
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kanade-agent: unexpected argument %q (see --help)\n", fs.Arg(0))
		return ExitConfig
	}

	// The boot sentinel comes first, before the config file or the network:
	// a new version that fails anywhere later in its start-up must still be
	// counted, or it could never be rolled back.
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "kanade-agent: cannot locate its own executable: %v\n", err)
		return ExitError
	}
	bootLog := slog.New(slog.NewTextHandler(stderr, nil))
	boot, err := selfupdate.Boot(exe, buildinfo.Version, bootLog)
	bootOK := err == nil
	if err != nil {
		// Updates cannot be trusted without the sentinel, but the agent
		// still runs: a broken update state must not brick the endpoint.
		bootLog.Error("self-update boot check failed; self-update disabled for this run", "err", err)
	} else if boot.Rollback {
		return ExitRestart
	}
	if buildinfo.FaultInjection == "exit-after-boot-check" {
		bootLog.Error("fault injection: exiting after the boot check (test build)")
		return ExitError
	}

	path := agentconfig.Resolve(*configPath)
	cfg, err := agentconfig.Load(path)
	if err != nil {
		fmt.Fprintf(stderr, "kanade-agent: %v\n\n%s", err, agentconfig.Help())
		return ExitConfig
	}
	level, _ := logging.ParseLevel(cfg.Log.Level)
	logger, closer, err := logging.New(level, cfg.Log.Path)
	if err != nil {
		fmt.Fprintf(stderr, "kanade-agent: %v\n", err)
		return ExitConfig
	}
	defer closer.Close()
	token, err := agentconfig.Token()
	if err != nil {
		logger.Error("reading the NATS token", "err", err)
		return ExitConfig
	}
	natsOpts, err := natsTLSOptions(cfg, logger)
	if err != nil {
		logger.Error("cannot set up TLS to the broker", "err", err)
		return ExitConfig
	}
	nkeyOpts, ok := nkeyOptions(cfg, logger)
	if !ok {
		return ExitConfig
	}
	natsOpts = append(natsOpts, nkeyOpts...)
	var update *agent.SelfUpdate
	if bootOK && !cfg.Update.Disabled {
		ring, source, rerr := cfg.ReleaseKeys()
		if rerr != nil {
			logger.Error("cannot load the release keys; self-update disabled (fix the file, then restart)", "err", rerr)
		} else {
			logger.Info("self-update enabled", "release_keys", ring.Len(), "keys_from", source)
			update = &agent.SelfUpdate{Exe: exe, ReleaseKeys: ring, HealthyAfter: cfg.HealthyAfter()}
		}
	}
	signed, err := commandSigning(cfg)
	if err != nil {
		logger.Error("reading the signed-command settings", "err", err)
		return ExitConfig
	}
	if err := os.MkdirAll(cfg.Agent.DataDir, 0o700); err != nil {
		logger.Error("creating the data dir", "dir", cfg.Agent.DataDir, "err", err)
		return ExitError
	}
	a, err := agent.New(agent.Config{
		ID:         cfg.Agent.ID,
		NATSURLs:   cfg.Agent.NATSURLs,
		Token:      token,
		DataDir:    cfg.Agent.DataDir,
		Version:    buildinfo.Version,
		Logger:     logger,
		SelfUpdate: update,

		// TLS (tls.go) and the NKey when the broker enforces roles (nkey.go).
		NATSOptions:    natsOpts,
		CommandSigning: signed,
	})
	if err != nil {
		logger.Error("invalid agent config", "err", err)
		return ExitConfig
	}
	return service.Run(func(ctx context.Context) int {
		err := a.Run(ctx)
		switch {
		case errors.Is(err, agent.ErrRestart):
			logger.Info("exiting for the service manager to start the new binary", "exit_code", ExitRestart)
			return ExitRestart
		case err != nil:
			logger.Error("agent stopped with an error", "err", err)
			return ExitError
		}
		return ExitOK
	})
}
