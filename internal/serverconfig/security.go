package serverconfig

import (
	"fmt"

	"github.com/kanade-project/kanade/internal/cmdsign"
)

// Security is the [security] table.
type Security struct {
	// CommandKeyFile is the command private key (kanade command-key
	// generate) the backend signs every command with: jobs, waves,
	// schedules and dashboard runs. Mode 0600 on Unix. Empty publishes
	// unsigned commands, which endpoints that require signed commands
	// refuse with exit 123.
	CommandKeyFile string `toml:"command_key_file"`
}

// CommandSigner loads [security] command_key_file; nil when unset. The
// error never contains key material.
func (c *Config) CommandSigner() (*cmdsign.Signer, error) {
	if c.Security.CommandKeyFile == "" {
		return nil, nil
	}
	s, err := cmdsign.LoadSigner(c.Security.CommandKeyFile)
	if err != nil {
		return nil, fmt.Errorf("[security] command_key_file: %w", err)
	}
	return s, nil
}
