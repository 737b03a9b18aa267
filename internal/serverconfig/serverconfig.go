// Package serverconfig loads server.toml, the configuration of `kanade
// server`. Like the agent's, it is strict (unknown keys are errors) and
// holds no secrets: the API token, the JWT secret and the NATS token come
// from the environment or from root-only files named here.
package serverconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"runtime"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/kanade-project/kanade/internal/broker"
)

// Environment variables carrying secrets.
const (
	EnvAPIToken  = "KANADE_API_TOKEN"
	EnvJWTSecret = "KANADE_JWT_SECRET"
	EnvNATSToken = "KANADE_NATS_TOKEN"
)

// DefaultHTTPListen is where the API and dashboard listen by default.
const DefaultHTTPListen = "127.0.0.1:8080"

// Config is server.toml.
type Config struct {
	DataDir string `toml:"data_dir"`
	NATS    NATS   `toml:"nats"`
	HTTP    HTTP   `toml:"http"`
	Auth    Auth   `toml:"auth"`
}

// NATS is the [nats] table.
type NATS struct {
	// Embedded runs the broker in-process (default true).
	Embedded *bool `toml:"embedded"`
	// Listen is the embedded broker's address.
	Listen string `toml:"listen"`
	// URLs of an external server or cluster (Embedded must be false).
	URLs []string `toml:"urls"`
	// Replicas of every JetStream resource (3 on a 3-node cluster).
	Replicas int `toml:"replicas"`
	// TokenFile holds the NATS token (root-only); else KANADE_NATS_TOKEN.
	TokenFile string `toml:"token_file"`
}

// HTTP is the [http] table.
type HTTP struct {
	Listen string `toml:"listen"`
}

// Auth is the [auth] table.
type Auth struct {
	// TokenFile holds the static admin API token; else KANADE_API_TOKEN.
	TokenFile string `toml:"token_file"`
	// JWTSecretFile holds the HS256 secret; else KANADE_JWT_SECRET.
	JWTSecretFile string `toml:"jwt_secret_file"`
}

// Secrets resolved from the environment or files.
type Secrets struct {
	APIToken  string
	JWTSecret []byte
	NATSToken string
}

// Parse decodes server.toml strictly and fills defaults.
func Parse(b []byte) (*Config, error) {
	var c Config
	dec := toml.NewDecoder(bytes.NewReader(b)).DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		var sme *toml.StrictMissingError
		if errors.As(err, &sme) {
			return nil, fmt.Errorf("unknown key(s):\n%s", sme.String())
		}
		return nil, err
	}
	return &c, c.fill()
}

// Load reads path; a missing file is an error.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("server config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("server config %s: %w", path, err)
	}
	return c, nil
}

// Default is the configuration without a file.
func Default() *Config {
	c := &Config{}
	_ = c.fill()
	return c
}

func (c *Config) fill() error {
	if c.NATS.Embedded == nil {
		embedded := len(c.NATS.URLs) == 0
		c.NATS.Embedded = &embedded
	}
	if *c.NATS.Embedded && len(c.NATS.URLs) > 0 {
		return errors.New("[nats] embedded = true and urls are both set: choose the embedded broker or an external one")
	}
	if !*c.NATS.Embedded && len(c.NATS.URLs) == 0 {
		return errors.New("[nats] embedded = false needs urls = [\"nats://host:4222\", …]")
	}
	if c.NATS.Listen == "" {
		c.NATS.Listen = broker.DefaultListen
	}
	if c.HTTP.Listen == "" {
		c.HTTP.Listen = DefaultHTTPListen
	}
	for _, addr := range []string{c.NATS.Listen, c.HTTP.Listen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("listen address %q: expected HOST:PORT", addr)
		}
	}
	if c.NATS.Replicas < 0 || c.NATS.Replicas > 5 {
		return fmt.Errorf("[nats] replicas = %d: expected 1 to 5", c.NATS.Replicas)
	}
	return nil
}

// Embedded reports whether the broker runs in-process.
func (c *Config) Embedded() bool { return c.NATS.Embedded == nil || *c.NATS.Embedded }

// LoadSecrets reads each secret from its file (which must not be readable
// by group or others on Unix) or else from the environment.
func (c *Config) LoadSecrets() (Secrets, error) {
	var s Secrets
	var err error
	if s.APIToken, err = secret(c.Auth.TokenFile, EnvAPIToken); err != nil {
		return s, err
	}
	jwt, err := secret(c.Auth.JWTSecretFile, EnvJWTSecret)
	if err != nil {
		return s, err
	}
	if jwt != "" {
		if len(jwt) < 32 {
			return s, errors.New("the JWT secret must be at least 32 bytes")
		}
		s.JWTSecret = []byte(jwt)
	}
	if s.NATSToken, err = secret(c.NATS.TokenFile, EnvNATSToken); err != nil {
		return s, err
	}
	return s, nil
}

func secret(file, env string) (string, error) {
	if file == "" {
		return os.Getenv(env), nil
	}
	st, err := os.Stat(file)
	if err != nil {
		return "", fmt.Errorf("secret file: %w", err)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("secret file %s is readable by group or others (mode %v): chmod 600 it", file, st.Mode().Perm())
	}
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("secret file %s does not exist", file)
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
