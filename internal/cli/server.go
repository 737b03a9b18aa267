package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/kanade-project/kanade/internal/logging"
	"github.com/kanade-project/kanade/internal/server"
	"github.com/kanade-project/kanade/internal/serverconfig"
)

func (a *app) serverCmd() *cobra.Command {
	var o server.Options
	var logLevel, configPath string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the kanade server (broker, projections, HTTP API)",
		Long: `Run the kanade server: a NATS broker with JetStream (embedded by default, or
an external server/cluster from [nats] urls in server.toml), every stream, KV
bucket and object store bootstrapped, the SQLite projection of the streams
under the data dir, and the HTTP API (with /metrics) on --http-listen.

The API needs credentials: ` + serverconfig.EnvAPIToken + ` (a static admin token) and/or
` + serverconfig.EnvJWTSecret + ` (an HS256 secret of at least 32 bytes for role tokens), or
the token_file / jwt_secret_file options of [auth]. The broker token, if any,
comes from ` + serverconfig.EnvNATSToken + `.

With [security] command_key_file = "/etc/kanade/command.key" (mode 0600; see
kanade command-key --help) the backend signs every command it publishes —
jobs, waves, schedules and dashboard runs — for endpoints that require
signed commands.

--dev also runs an agent for this machine inside the server and turns API
authentication OFF, so that one command gives a working fleet of one on a
laptop. Never use --dev on a network.

--dev --tls also serves the broker and the API over TLS with a development CA
made on the first run under DATA_DIR/tls (ca.pem, server.pem, keys 0600) and
reused after; the dev agent trusts it, and the banner shows the --nats-ca
flag that makes the CLI trust it too. In production, name your own
certificates in server.toml instead: [nats] and [http] tls_cert_file and
tls_key_file (see "kanade tls --help").`,
		Example: `  kanade server --dev
  kanade server --dev --data-dir /tmp/kanade --nats-listen 127.0.0.1:14222 --http-listen 127.0.0.1:18080
  kanade server --dev --tls
  KANADE_API_TOKEN=$(cat /etc/kanade/api.token) kanade server --config /etc/kanade/server.toml`,
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
			if configPath != "" {
				if o.Config, err = serverconfig.Load(configPath); err != nil {
					return &exitError{exitUsage, err.Error()}
				}
			}
			if o.DataDir == "" && (o.Config == nil || o.Config.DataDir == "") {
				o.DataDir, err = defaultDataDir(o.Dev)
				if err != nil {
					return err
				}
			}
			o.Logger = logger
			o.Out = a.out
			return server.Run(cmd.Context(), o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&configPath, "config", "", "server.toml (optional; flags override it)")
	fl.BoolVar(&o.Dev, "dev", false, "also run a local agent for this machine, and turn API authentication off")
	fl.BoolVar(&o.DevTLS, "tls", false, "with --dev: serve the broker and the API over TLS with a development CA under the data dir")
	fl.StringVar(&o.DataDir, "data-dir", "", "where the broker, the database and the dev agent keep their data (default: the user cache dir, kanade/dev or kanade/server)")
	fl.StringVar(&o.NATSListen, "nats-listen", "", "HOST:PORT of the embedded broker (default 127.0.0.1:4222)")
	fl.StringVar(&o.HTTPListen, "http-listen", "", "HOST:PORT of the HTTP API (default "+serverconfig.DefaultHTTPListen+")")
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
