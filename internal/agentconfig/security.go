package agentconfig

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/kanade-project/kanade/internal/signing"
)

// Signed commands are configured by two settings of the endpoint itself,
// never by KV (whoever can write KV must not be able to turn the check off
// or add a key):
//
//	[security] command_keys_file        a ring of command public keys
//	[security] require_signed_commands  the enforcement switch
//
// On Windows the registry values CommandKeys (REG_MULTI_SZ or REG_SZ, one
// key line per string) and RequireSignedCommands (REG_DWORD) under
// HKLM\SOFTWARE\Kanade\Agent take precedence when present.

// CommandSigning returns the enforcement switch and where the command key
// ring comes from (nil when no ring is configured). The ring itself is read
// by the agent (CommandKeys.Load), at start and whenever CommandKeys.Stamp
// changes, so an operator can rotate keys without a restart.
func (c *Config) CommandSigning() (require bool, keys *CommandKeys, err error) {
	require = c.Security.RequireSignedCommands
	if v, ok, err := platformRequireSignedCommands(); err != nil {
		return false, nil, err
	} else if ok {
		require = v
	}
	if _, ok, err := platformCommandKeys(); err != nil {
		return false, nil, err
	} else if ok {
		return require, &CommandKeys{registry: true}, nil
	}
	if c.Security.CommandKeysFile == "" {
		return require, nil, nil
	}
	return require, &CommandKeys{path: c.Security.CommandKeysFile}, nil
}

// CommandKeys is the source of the command key ring: a file or, on
// Windows, the registry.
type CommandKeys struct {
	path     string
	registry bool
}

// String names the source for log lines and refusal messages.
func (k *CommandKeys) String() string {
	if k.registry {
		return `the registry value HKLM\SOFTWARE\Kanade\Agent\CommandKeys`
	}
	return k.path
}

// Stamp cheaply identifies the ring's current content: for a file its
// identity, size, time and owner (a stat, no read), for the registry a hash
// of the value. The agent re-reads the ring only when the stamp changes.
func (k *CommandKeys) Stamp() (string, error) {
	if k.registry {
		text, ok, err := platformCommandKeys()
		if err != nil {
			return "", err
		}
		if !ok {
			return "absent", nil
		}
		sum := sha256.Sum256([]byte(text))
		return hex.EncodeToString(sum[:]), nil
	}
	st, err := os.Stat(k.path)
	if err != nil {
		return "", err
	}
	return fileStamp(st), nil
}

// Load reads and parses the ring. A file must be protected like the
// agent's own binary: owned by root (or the agent's account) and not
// writable by group or others, or anyone who can write it can add a key.
func (k *CommandKeys) Load() (*signing.Ring, error) {
	if k.registry {
		text, ok, err := platformCommandKeys()
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%s has disappeared", k)
		}
		r, err := signing.ParseRing([]byte(text), signing.PurposeCommand)
		if err != nil {
			return nil, fmt.Errorf("command keys in %s: %w", k, err)
		}
		return r, nil
	}
	st, err := os.Stat(k.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("[security] command_keys_file %s does not exist (copy the command.pub of `kanade command-key generate` there)", k.path)
	}
	if err != nil {
		return nil, fmt.Errorf("[security] command_keys_file: %w", err)
	}
	if err := checkRingFile(k.path, st); err != nil {
		return nil, err
	}
	r, err := signing.LoadRing(k.path, signing.PurposeCommand)
	if err != nil {
		return nil, fmt.Errorf("[security] command_keys_file %w", err)
	}
	return r, nil
}
