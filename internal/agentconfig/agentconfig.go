// Package agentconfig loads the agent's local configuration file
// (agent.toml) and its secrets.
//
// The file is strict: an unknown key is an error, because a misspelt key on
// 5,000 PCs is otherwise silently ignored. Secrets never live in the file:
// the NATS token comes from the KANADE_NATS_TOKEN environment variable, or on
// Windows from the registry value first (so it never shows in a process
// list or a config backup).
package agentconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/kanade-project/kanade/internal/hostinfo"
	"github.com/kanade-project/kanade/internal/signing"
	"github.com/kanade-project/kanade/internal/wire"
)

// EnvConfig names the config file when --config is not given.
const EnvConfig = "KANADE_AGENT_CONFIG"

// EnvToken carries the NATS token.
const EnvToken = "KANADE_NATS_TOKEN"

// Config is the content of agent.toml.
type Config struct {
	Agent    Agent    `toml:"agent"`
	Log      Log      `toml:"log"`
	Security Security `toml:"security"`
	Update   Update   `toml:"update"`
}

// Security is the [security] table. Trust lives only here (or in the
// Windows registry), never in KV: whoever can write KV must not be able to
// make endpoints accept their binaries.
type Security struct {
	// ReleaseKeysFile lists the release public keys the agent accepts
	// updates from; empty (and no registry value) accepts unsigned
	// releases on their digest alone.
	ReleaseKeysFile string `toml:"release_keys_file"`
	// CommandKeysFile and RequireSignedCommands: see security.go.
	CommandKeysFile       string `toml:"command_keys_file"`
	RequireSignedCommands bool   `toml:"require_signed_commands"`
}

// Update is the [update] table.
type Update struct {
	// HealthyAfter is how long a new version must stay connected before it
	// becomes the last-good binary (default 30s).
	HealthyAfter string `toml:"healthy_after"`
	// Disabled turns self-update off on this endpoint.
	Disabled bool `toml:"disabled"`
}

// Agent is the [agent] table.
type Agent struct {
	// ID is the pc_id; default the hostname, case kept.
	ID       string   `toml:"id"`
	NATSURLs []string `toml:"nats_urls"`
	DataDir  string   `toml:"data_dir"`
	// NATSCAFile and NATSPins: see tls.go.
	NATSCAFile string   `toml:"nats_ca_file"`
	NATSPins   []string `toml:"nats_pin_sha256"`
	// NKeyFile is the root-only file holding this agent's NKey seed
	// (kanade agent enroll); see nkey.go.
	NKeyFile string `toml:"nkey_file"`
}

// Log is the [log] table.
type Log struct {
	Level string `toml:"level"`
	// Path is the log file; empty means standard error.
	Path string `toml:"path"`
}

// Example is a complete agent.toml with every option, printed when the
// config is missing or invalid.
func Example() string {
	return fmt.Sprintf(`[agent]
# pc_id of this endpoint; default: the hostname (case kept)
id = "%s"
# one or more broker URLs (a cluster lists all of its nodes)
nats_urls = ["nats://kanade.example.internal:4222"]
# where the outbox, ledger and staged updates live
data_dir = '%s'
# TLS: the CA (PEM) that signed the broker's certificate; when set, the agent
# connects with TLS only and trusts this CA only, not the system's roots
#nats_ca_file = '<path of the broker CA certificate, PEM>'
# optional: the broker's public key pins (kanade tls pin server.pem)
#nats_pin_sha256 = ["<64 hex digits>"]
# brokers with [nats] auth = "nkeys": this agent's seed (kanade agent enroll),
# a root-only file (mode 0600); on Windows the registry value
# HKLM\SOFTWARE\Kanade\Agent\NatsNkeySeed is used first
# nkey_file = '%s'

[log]
# debug | info | warn | error
level = "info"
# empty: standard error
path = '%s'

[security]
# release public keys (kanade release-key generate); empty: accept unsigned
release_keys_file = '%s'
# command public keys (kanade command-key generate); owned by root (or the
# agent's user), not writable by group or others; re-read every minute
command_keys_file = '%s'
# true: run only commands signed by a key of command_keys_file (exit 123
# otherwise). With an empty ring nothing is enforced (warned at start); a
# missing or broken file refuses every command until it is fixed.
require_signed_commands = false

[update]
# how long a new version must stay connected before it is trusted
healthy_after = "30s"
# true: never self-update this endpoint
disabled = false
`, hostinfo.Hostname(), DefaultDataDir(), filepath.Join(filepath.Dir(DefaultPath()), "nkey.seed"), filepath.Join(DefaultLogDir(), "agent.log"), filepath.Join(filepath.Dir(DefaultPath()), "release-keys.pub"),
		filepath.Join(filepath.Dir(DefaultPath()), "command-keys.pub"))
}

// Help is appended to every load error: it lists every way to fix it.
func Help() string {
	return fmt.Sprintf(`The agent looks for its config in this order:
  1. the --config FILE flag
  2. the %s environment variable
  3. %s
The NATS token, if the broker needs one, comes from the %s environment variable%s, never from the file.
%s
A complete agent.toml:

%s`, EnvConfig, DefaultPath(), EnvToken, tokenHelpSuffix(), nkeyHelp(), Example())
}

// Resolve returns the config path to use: flag, then environment, then the
// platform default.
func Resolve(flagPath string) string {
	if flagPath != "" {
		return flagPath
	}
	if p := os.Getenv(EnvConfig); p != "" {
		return p
	}
	return DefaultPath()
}

// Load reads and validates the file at path, filling defaults.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("config file %s does not exist", path)
		}
		return nil, fmt.Errorf("reading config %s: %w", path, err)
	}
	cfg, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes agent.toml content strictly and validates it.
func Parse(b []byte) (*Config, error) {
	var cfg Config
	dec := toml.NewDecoder(bytes.NewReader(b)).DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		var sme *toml.StrictMissingError
		if errors.As(err, &sme) {
			return nil, fmt.Errorf("unknown key(s):\n%s\n", sme.String())
		}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return nil, fmt.Errorf("line %d, column %d: %s", row, col, de.Error())
		}
		return nil, err
	}
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func (c *Config) fill() error {
	if c.Agent.ID == "" {
		c.Agent.ID = hostinfo.Hostname()
	}
	if err := wire.CheckToken("[agent] id", c.Agent.ID); err != nil {
		return err
	}
	if len(c.Agent.NATSURLs) == 0 {
		return errors.New("[agent] nats_urls is empty: list at least one broker URL, e.g. nats_urls = [\"nats://server:4222\"]")
	}
	for _, u := range c.Agent.NATSURLs {
		if strings.TrimSpace(u) == "" {
			return errors.New("[agent] nats_urls contains an empty URL")
		}
	}
	if c.Agent.DataDir == "" {
		c.Agent.DataDir = DefaultDataDir()
	}
	if err := c.Agent.checkTLS(); err != nil {
		return err
	}
	if c.Update.HealthyAfter == "" {
		c.Update.HealthyAfter = "30s"
	}
	if d, err := wire.ParseDuration(c.Update.HealthyAfter); err != nil || d < time.Second {
		return fmt.Errorf("[update] healthy_after %q: expected a duration of at least 1s, like \"30s\"", c.Update.HealthyAfter)
	}
	switch strings.ToLower(c.Log.Level) {
	case "":
		c.Log.Level = "info"
	case "debug", "info", "warn", "warning", "error":
		c.Log.Level = strings.ToLower(c.Log.Level)
	default:
		return fmt.Errorf("[log] level %q is not one of debug, info, warn, error", c.Log.Level)
	}
	return nil
}

// Token returns the NATS token from the platform's secret store or the
// environment; empty when none is configured.
func Token() (string, error) {
	if t, ok, err := platformToken(); err != nil {
		return "", err
	} else if ok {
		return t, nil
	}
	return os.Getenv(EnvToken), nil
}

// HealthyAfter returns [update] healthy_after (validated by Parse).
func (c *Config) HealthyAfter() time.Duration {
	d, _ := wire.ParseDuration(c.Update.HealthyAfter)
	return d
}

// ReleaseKeys returns the release key ring: the registry value on Windows
// when present, else [security] release_keys_file, else an empty ring. A
// configured file that cannot be read or parsed is an error: silently
// trusting nothing would accept unsigned binaries.
func (c *Config) ReleaseKeys() (*signing.Ring, string, error) {
	if text, ok, err := platformReleaseKeys(); err != nil {
		return nil, "", err
	} else if ok {
		r, err := signing.ParseRing([]byte(text), signing.PurposeRelease)
		if err != nil {
			return nil, "", fmt.Errorf("release keys in the registry: %w", err)
		}
		return r, "registry", nil
	}
	if c.Security.ReleaseKeysFile == "" {
		r, _ := signing.ParseRing(nil, signing.PurposeRelease)
		return r, "", nil
	}
	r, err := signing.LoadRing(c.Security.ReleaseKeysFile, signing.PurposeRelease)
	if err != nil {
		return nil, "", fmt.Errorf("[security] release_keys_file: %w", err)
	}
	return r, c.Security.ReleaseKeysFile, nil
}
