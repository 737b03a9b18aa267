package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kanade-project/kanade/internal/natsauth"
	"github.com/kanade-project/kanade/internal/server"
	"github.com/kanade-project/kanade/internal/wire"
)

// enrollCmds are `kanade agent enroll|revoke|credentials`: per-agent NATS
// credentials, through the server's HTTP API (admin role, audited).
func (a *app) enrollCmds() []*cobra.Command {
	o := &apiOpts{}
	cmds := []*cobra.Command{a.agentEnrollCmd(o), a.agentRevokeCmd(o), a.agentCredentialsCmd(o)}
	for _, c := range cmds {
		o.addAPIFlag(c)
	}
	return cmds
}

// issued is the API's answer to an enrolment.
type issued struct {
	natsauth.Enrollment
	Seed     string  `json:"seed"`
	Replaced bool    `json:"replaced"`
	Applied  applied `json:"applied"`
}

type applied struct {
	Live         bool   `json:"live"`
	Instructions string `json:"instructions"`
}

func (a *app) agentEnrollCmd(o *apiOpts) *cobra.Command {
	var out string
	var force bool
	cmd := &cobra.Command{
		Use:   "enroll <pc> --out FILE",
		Short: "Issue a PC its own NATS credential (an NKey) and write its seed to FILE",
		Long: `enroll asks the server to mint an NKey pair for one PC, records the public
key, and writes the private seed to FILE (mode 0600). The server keeps no copy
of the seed: FILE is the only one. Enrolling a PC again replaces its key (the
old one stops working at once).

This needs a server with [nats] auth = "nkeys" in server.toml. With it every
agent authenticates with its own key and is held to the agent role: it may
publish only its own results, events, heartbeat, inventory and obs subjects,
read only its own commands, config and replies, and can never publish a
command, write KV or read another PC's data. "kanade agent revoke" cuts one
agent off without touching the others.

Install the seed on the endpoint, then delete FILE:
  Linux:   install -m 600 -o root FILE /etc/kanade/nkey.seed
           and in /etc/kanade/agent.toml, [agent] nkey_file = "/etc/kanade/nkey.seed"
  Windows: the registry value HKLM\SOFTWARE\Kanade\Agent\NatsNkeySeed (REG_SZ),
           which needs no config change (deploy-agent.ps1 -NkeySeedFile FILE)
Then restart the agent.

With an external NATS cluster the server cannot change the cluster's users:
enroll prints the user entry to add to its configuration (or run
"kanade nats config" for the whole block) before the agent can connect.`,
		Example: `  kanade agent enroll pc-042 --out pc-042.seed
  kanade agent enroll pc-042 --out pc-042.seed --force   # re-issue, overwriting the file`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pc := args[0]
			if err := wire.CheckToken("pc", pc); err != nil {
				return &exitError{exitUsage, err.Error()}
			}
			if out == "" {
				return &exitError{exitUsage, "--out FILE is required: the seed is written to a file (mode 0600), never to the terminal"}
			}
			// Checked before the server mints anything: a key whose seed
			// cannot be written would only lock the PC out.
			if err := checkSeedTarget(out, force); err != nil {
				return &exitError{exitUsage, err.Error()}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			var iss issued
			if err := c.do(cmd.Context(), "POST", "/api/agents/"+url.PathEscape(pc)+"/credentials", nil, "", &iss); err != nil {
				return asExit(err)
			}
			if err := natsauth.WriteSeedFile(out, []byte(iss.Seed)); err != nil {
				return &exitError{exitFailure, fmt.Sprintf("%s is enrolled (public key %s) but its seed could not be written: %v; run enroll again to issue a new key", pc, iss.PublicKey, err)}
			}
			verb := "enrolled"
			if iss.Replaced {
				verb = "re-enrolled (its previous key no longer works)"
			}
			fmt.Fprintf(a.out, "%s %s\n  public key: %s\n  seed written to: %s (mode 0600; the server keeps no copy)\n", pc, verb, iss.PublicKey, out)
			if iss.Applied.Live {
				fmt.Fprintln(a.out, "  the broker accepts this key now")
			} else {
				fmt.Fprintf(a.out, "\nThe server uses an external NATS cluster. %s\n", iss.Applied.Instructions)
			}
			fmt.Fprintf(a.out, `
Install the seed on %s, then delete %s:
  Linux:   install -m 600 -o root %s /etc/kanade/nkey.seed
           and set [agent] nkey_file = "/etc/kanade/nkey.seed" in agent.toml
  Windows: registry value HKLM\SOFTWARE\Kanade\Agent\NatsNkeySeed (REG_SZ):
           deploy-agent.ps1 -NkeySeedFile %s
Then restart the agent.
`, pc, out, out, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write the agent's seed to (mode 0600)")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite FILE if it exists")
	return cmd
}

// checkSeedTarget refuses to overwrite a file without force and checks the
// directory exists, before any key is minted.
func checkSeedTarget(path string, force bool) error {
	st, err := os.Stat(path)
	switch {
	case err == nil && st.IsDir():
		return fmt.Errorf("--out %s is a directory: name a file", path)
	case err == nil && !force:
		return fmt.Errorf("--out %s exists: choose another file, or pass --force to overwrite it", path)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("--out %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("--out %s: the directory %s does not exist", path, dir)
	}
	return nil
}

func (a *app) agentRevokeCmd(o *apiOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke <pc>",
		Short: "Revoke a PC's NATS credential: the broker disconnects it and refuses it from now on",
		Long: `revoke removes the PC's public key from the server's enrolment registry and
from the embedded broker at once: the agent's connection is closed and every
reconnect is refused. No other agent is disconnected. Enroll the PC again to
issue it a new key.

With an external NATS cluster, revoke prints the user entry to remove from
the cluster's configuration; the agent keeps its access until you do.`,
		Example: `  kanade agent revoke pc-042`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pc := args[0]
			if err := wire.CheckToken("pc", pc); err != nil {
				return &exitError{exitUsage, err.Error()}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			var res struct {
				PublicKey string  `json:"public_key"`
				Applied   applied `json:"applied"`
			}
			if err := c.do(cmd.Context(), "DELETE", "/api/agents/"+url.PathEscape(pc)+"/credentials", nil, "", &res); err != nil {
				return asExit(err)
			}
			fmt.Fprintf(a.out, "%s revoked (public key %s)\n", pc, res.PublicKey)
			if res.Applied.Live {
				fmt.Fprintln(a.out, "  the broker closed its connection and refuses the key")
			} else {
				fmt.Fprintf(a.out, "\nThe server uses an external NATS cluster. %s\n", res.Applied.Instructions)
			}
			return nil
		},
	}
}

func (a *app) agentCredentialsCmd(o *apiOpts) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "credentials",
		Short: "List the PCs enrolled with their own NATS credential",
		Long: `credentials lists every enrolled PC with its public NKey and when it was
enrolled (the seeds are not kept by the server and cannot be shown).`,
		Example: `  kanade agent credentials
  kanade agent credentials -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			var res struct {
				Agents []natsauth.Enrollment `json:"agents"`
			}
			if err := c.do(cmd.Context(), "GET", "/api/nats/credentials", nil, "", &res); err != nil {
				return asExit(err)
			}
			if output == "json" {
				enc := json.NewEncoder(a.out)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			if len(res.Agents) == 0 {
				fmt.Fprintln(a.out, "no agent is enrolled (kanade agent enroll <pc> --out FILE)")
				return nil
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PC\tPUBLIC KEY\tENROLLED")
			for _, e := range res.Agents {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", e.PC, e.PublicKey, e.EnrolledAt.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

// natsCmd is `kanade nats`: the broker's configuration as the server sees it.
func (a *app) natsCmd() *cobra.Command {
	o := &apiOpts{}
	cmd := &cobra.Command{
		Use:   "nats",
		Short: "NATS roles: print the nats-server authorization block for an external cluster",
	}
	cmd.RunE = parentRunE
	var dataDir string
	cfg := &cobra.Command{
		Use:   "config",
		Short: "Print the authorization block granting every user its role",
		Long: `config prints the nats-server "authorization { users = [...] }" block that
grants the server's backend key, the operator key and every enrolled agent
their roles — what the embedded broker enforces with [nats] auth = "nkeys".
For an external cluster, save it next to each node's configuration, include
it (include ./kanade-auth.conf), and reload the nodes after every enroll or
revoke. It holds public keys only.

Before the server's first start on an external cluster the API is not up
(the server cannot connect until the cluster knows its key): run it on the
server machine with --data-dir, which creates the server's keys there.

The roles:
  backend   every right (it bootstraps streams and writes the audit log)
  operator  the CLI: every right but publishing the agents' subjects
            (results, events, heartbeat, host_perf, inventory, obs) and audit
  agent     per PC: its own commands, requests, config keys and inbox;
            publishes only subjects carrying its pc_id; read-only JetStream
            calls scoped to its own keys`,
		Example: `  kanade nats config > /etc/nats/kanade-auth.conf && nats-server --signal reload
  kanade nats config --data-dir /var/lib/kanade-server   # before the server's first start`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir != "" {
				// The server cannot connect to a cluster that does not
				// know its key yet, so its API cannot answer: read (and
				// on first use create) the keys where the server will.
				text, err := server.NATSAuthConfig(dataDir, slog.New(slog.NewTextHandler(a.errOut, nil)))
				if err != nil {
					return &exitError{exitFailure, err.Error()}
				}
				_, err = io.WriteString(a.out, text)
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			text, err := c.doRaw(cmd.Context(), "GET", "/api/nats/config", nil, "")
			if err != nil {
				return asExit(err)
			}
			_, err = a.out.Write(text)
			return err
		},
	}
	o.addAPIFlag(cfg)
	cfg.Flags().StringVar(&dataDir, "data-dir", "", "read the keys from the server's data dir instead of its API (creating the backend and operator keys when missing): for the first start on an external cluster; run it as the server's user")
	cmd.AddCommand(cfg)
	return cmd
}
