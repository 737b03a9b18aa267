package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/kanade-project/kanade/internal/broker"
	"github.com/kanade-project/kanade/internal/logging"
	"github.com/kanade-project/kanade/internal/server"
)

func (a *app) serverCmd() *cobra.Command {
	var o server.Options
	var logLevel string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the kanade server (embedded NATS broker with JetStream)",
		Long: `Run the kanade server: an embedded NATS broker with JetStream, with every
stream, KV bucket and object store bootstrapped.

--dev also runs an agent for this machine inside the server, so that one
command gives a working fleet of one. The broker token, if any, comes from
` + EnvToken + `.`,
		Example: `  kanade server --dev
  kanade server --dev --data-dir /tmp/kanade --nats-listen 127.0.0.1:14222`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level, err := logging.ParseLevel(logLevel)
			if err != nil {
				return &exitError{exitUsage, err.Error()}
			}
			logger, closer, err := logging.New(level, "")
			if err != nil {
				return err
			}
			defer closer.Close()
			if o.DataDir == "" {
				o.DataDir, err = defaultDataDir(o.Dev)
				if err != nil {
					return err
				}
			}
			o.Token = os.Getenv(EnvToken)
			o.Logger = logger
			o.Out = a.out
			return server.Run(cmd.Context(), o)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&o.Dev, "dev", false, "also run a local agent for this machine")
	fl.StringVar(&o.DataDir, "data-dir", "", "where the broker and the dev agent keep their data (default: the user cache dir, kanade/dev or kanade/server)")
	fl.StringVar(&o.NATSListen, "nats-listen", broker.DefaultListen, "HOST:PORT of the embedded broker")
	fl.StringVar(&o.AgentID, "agent-id", "", "pc_id of the dev agent (default: the hostname)")
	fl.StringVar(&logLevel, "log-level", "info", "debug | info | warn | error")
	return cmd
}

func defaultDataDir(dev bool) (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no --data-dir given and no user cache dir: %w", err)
	}
	name := "server"
	if dev {
		name = "dev"
	}
	return filepath.Join(base, "kanade", name), nil
}
