package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/kanade-project/kanade/internal/cmdsign"
	"github.com/kanade-project/kanade/internal/signing"
)

// EnvCommandKey holds the path of the command private key file that signs
// the commands this CLI publishes when --command-key is not given. It is a
// path, never the key itself: key material must not sit in the
// environment or on a command line.
const EnvCommandKey = "KANADE_COMMAND_KEY"

// commandKeyFlagHelp is the --command-key help shared by the root flag.
const commandKeyFlagHelp = "sign published commands with this command private key file (env " + EnvCommandKey + "); endpoints that require signed commands refuse unsigned ones with exit 123"

// commandSigner loads the key named by --command-key or KANADE_COMMAND_KEY;
// nil when neither is set (commands go out unsigned).
func (a *app) commandSigner() (*cmdsign.Signer, error) {
	path, from := a.commandKey, "--command-key"
	if path == "" {
		path, from = os.Getenv(EnvCommandKey), EnvCommandKey
	}
	if path == "" {
		return nil, nil
	}
	s, err := cmdsign.LoadSigner(path)
	if err != nil {
		return nil, &exitError{exitUsage, fmt.Sprintf("%s: %v; nothing published", from, err)}
	}
	return s, nil
}

func (a *app) commandKeyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "command-key",
		Short: "Create the Ed25519 key that signs commands",
		Long: `An endpoint that requires signed commands runs only commands signed by a key
it trusts, and answers everything else with exit code 123: unsigned, signed by
an unknown key, changed after signing, re-published to another PC or group,
or replayed after it expired. "command-key generate" creates such a key pair:

  DIR/command.key  the private key (mode 0600). It stays with the operators
                   (kanade --command-key DIR/command.key run …, or
                   KANADE_COMMAND_KEY=DIR/command.key) and with the backend
                   ([security] command_key_file in server.toml, which signs
                   every job, schedule and dashboard run).
  DIR/command.pub  the public key. It goes to every endpoint:
                   [security] command_keys_file in agent.toml (owned by root,
                   not writable by group or others) with
                   require_signed_commands = true, or on Windows the registry
                   values CommandKeys (REG_MULTI_SZ) and RequireSignedCommands
                   (REG_DWORD 1) under HKLM\SOFTWARE\Kanade\Agent.

A ring file may hold several public-key lines (one per operator or backend).
To rotate: add the new .pub line to the endpoints' ring (agents re-read it
every minute), sign with the new key, then remove the old line.`,
	}
	var dir string
	gen := &cobra.Command{
		Use:     "generate --dir DIR",
		Short:   "Write DIR/command.key (private, 0600) and DIR/command.pub (public)",
		Example: "  kanade command-key generate --dir ~/.kanade/keys",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return &exitError{exitUsage, "--dir is required: the directory that receives command.key and command.pub"}
			}
			abs, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			keyPath := filepath.Join(abs, signing.PurposeCommand+".key")
			pubPath := filepath.Join(abs, signing.PurposeCommand+".pub")
			for _, p := range []string{keyPath, pubPath} {
				if _, err := os.Lstat(p); err == nil {
					return &exitError{exitFailure, fmt.Sprintf("%s already exists; refusing to overwrite a command key (endpoints trust the public one). Choose another --dir", p)}
				} else if !errors.Is(err, os.ErrNotExist) {
					return err
				}
			}
			id, err := signing.Generate(abs, signing.PurposeCommand)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, `generated command key %s
  private key: %s (mode 0600)
      keep it with the operators or the backend; never copy it to endpoints.
      sign commands with: kanade --command-key %s run <pc> -- <script>
      (or set %s to its path); the backend signs with
        server.toml: [security]
                     command_key_file = "<path of command.key on the server>"
  public key:  %s
      install it on every endpoint (owned by root, not writable by others):
        agent.toml:  [security]
                     command_keys_file = "<path of command.pub on the endpoint>"
                     require_signed_commands = true
        Windows:     or the registry values under HKLM\SOFTWARE\Kanade\Agent:
                     CommandKeys (REG_MULTI_SZ, one key line per string) and
                     RequireSignedCommands (REG_DWORD 1)
      enforcing endpoints refuse (exit 123) unsigned commands and commands
      signed by any key they do not trust; their heartbeat lists the trusted
      key ids (command_key_fingerprints).
`, id, keyPath, keyPath, EnvCommandKey, pubPath)
			return nil
		},
	}
	gen.Flags().StringVar(&dir, "dir", "", "directory for command.key and command.pub (created 0700 if missing)")
	cmd.AddCommand(gen)
	cmd.RunE = parentRunE
	return cmd
}
