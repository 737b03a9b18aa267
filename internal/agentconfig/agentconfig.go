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

	"github.com/pelletier/go-toml/v2"

	"github.com/kanade-project/kanade/internal/hostinfo"
	"github.com/kanade-project/kanade/internal/wire"
)

// EnvConfig names the config file when --config is not given.
const EnvConfig = "KANADE_AGENT_CONFIG"

// EnvToken carries the NATS token.
const EnvToken = "KANADE_NATS_TOKEN"

// Config is the content of agent.toml.
type Config struct {
	Agent Agent `toml:"agent"`
	Log   Log   `toml:"log"`
}

// Agent is the [agent] table.
type Agent struct {
	// ID is the pc_id; default the hostname, case kept.
	ID       string   `toml:"id"`
	NATSURLs []string `toml:"nats_urls"`
	DataDir  string   `toml:"data_dir"`
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

[log]
# debug | info | warn | error
level = "info"
# empty: standard error
path = '%s'
`, hostinfo.Hostname(), DefaultDataDir(), filepath.Join(DefaultLogDir(), "agent.log"))
}

// Help is appended to every load error: it lists every way to fix it.
func Help() string {
	return fmt.Sprintf(`The agent looks for its config in this order:
  1. the --config FILE flag
  2. the %s environment variable
  3. %s
The NATS token, if the broker needs one, comes from the %s environment variable%s, never from the file.
A complete agent.toml:

%s`, EnvConfig, DefaultPath(), EnvToken, tokenHelpSuffix(), Example())
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
