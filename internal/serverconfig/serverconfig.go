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
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/kanade-project/kanade/internal/broker"
	"github.com/kanade-project/kanade/internal/wire"
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
	DataDir   string    `toml:"data_dir"`
	NATS      NATS      `toml:"nats"`
	HTTP      HTTP      `toml:"http"`
	Auth      Auth      `toml:"auth"`
	Retention Retention `toml:"retention"`
	Security  Security  `toml:"security"`
}

// NATS is the [nats] table.
type NATS struct {
	// Embedded runs the broker in-process (default true).
	Embedded *bool `toml:"embedded"`
	// Listen is the embedded broker's address.
	Listen string `toml:"listen"`
	// URLs of an external server or cluster (Embedded must be false).
	URLs []string `toml:"urls"`
	// Replicas of every JetStream stream, KV bucket and object store: 1,
	// 3 or 5; unset (0) keeps the count each existing resource has and
	// creates new ones with the highest count found (1 on a new system),
	// so an omitted setting never scales a cluster down. 3 on a cluster of three or more nodes keeps
	// everything available, and nothing acknowledged lost, when one node
	// fails; 5 survives two. More than 1 needs an external cluster.
	Replicas int `toml:"replicas"`
	// TokenFile holds the NATS token (root-only); else KANADE_NATS_TOKEN.
	TokenFile string `toml:"token_file"`
	// TLSCertFile, TLSKeyFile and CAFile: see tls.go.
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`
	CAFile      string `toml:"ca_file"`
	// Auth is how clients authenticate to the broker: "token" (default)
	// or "nkeys" (per-role permissions); see natsauth.go.
	Auth string `toml:"auth"`
}

// HTTP is the [http] table.
type HTTP struct {
	Listen string `toml:"listen"`
	// TLSCertFile and TLSKeyFile: see tls.go.
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`
}

// Auth is the [auth] table.
type Auth struct {
	// TokenFile holds the static admin API token; else KANADE_API_TOKEN.
	TokenFile string `toml:"token_file"`
	// JWTSecretFile holds the HS256 secret; else KANADE_JWT_SECRET.
	JWTSecretFile string `toml:"jwt_secret_file"`
}

// Retention is the [retention] table: how long the SQLite projection keeps
// the rows of its history tables, and how often the server trims them.
// Each age is a duration like "90d" or "12h"; "off" (or "0") keeps a
// table's rows forever; empty means the default. JetStream's own limits
// (RESULTS 30 d, AUDIT 90 d, ...) are separate: the projection may keep
// more than the streams, and a rebuilt database holds only what the streams
// still have.
type Retention struct {
	Results          string `toml:"results"`           // default 90d
	Started          string `toml:"started"`           // default 7d
	Timeline         string `toml:"timeline"`          // default 30d
	InventoryHistory string `toml:"inventory_history"` // default 180d
	Audit            string `toml:"audit"`             // default 365d, at least 90d
	// AllowShortAudit permits an audit age below MinAuditRetention. The
	// audit log is the record of who did what; shortening it below what
	// the AUDIT stream itself keeps must be a stated decision, not a
	// copy-paste of another line.
	AllowShortAudit bool `toml:"allow_short_audit"`
	// Interval between trims (default 1h, 1m to 24h); the first trim runs
	// a minute after start.
	Interval string `toml:"interval"`
	// BatchSize is the most rows deleted per transaction (default 1000,
	// 1 to 100000): projectors write between two batches.
	BatchSize int `toml:"batch_size"`
}

// Retention defaults and bounds.
const (
	DefaultRetentionInterval  = time.Hour
	DefaultRetentionBatchSize = 1000
	// MinRetention is the shortest age a table may be given: anything
	// shorter is a unit mistake ("90m" for "90d"), not a policy.
	MinRetention = time.Hour
	// MinAuditRetention is the audit floor without allow_short_audit: the
	// AUDIT stream's own max age.
	MinAuditRetention = 90 * 24 * time.Hour
)

// TableRetention is one trimmable table and the age beyond which its rows
// are deleted; MaxAge 0 keeps them forever.
type TableRetention struct {
	Table  string
	MaxAge time.Duration
}

// RetentionPolicy is the [retention] table parsed and defaulted.
type RetentionPolicy struct {
	// Tables lists every trimmable table of the store (results, started,
	// timeline, inventory_history, audit), disabled ones with MaxAge 0.
	Tables    []TableRetention
	Interval  time.Duration
	BatchSize int
}

// Policy parses and checks the table; every error names its key. Parse
// and Load call it, so a loaded Config's Policy never fails.
func (r Retention) Policy() (RetentionPolicy, error) {
	p := RetentionPolicy{Interval: DefaultRetentionInterval, BatchSize: DefaultRetentionBatchSize}
	for _, t := range []struct{ key, value, def string }{
		{"results", r.Results, "90d"},
		{"started", r.Started, "7d"},
		{"timeline", r.Timeline, "30d"},
		{"inventory_history", r.InventoryHistory, "180d"},
		{"audit", r.Audit, "365d"},
	} {
		v := strings.TrimSpace(t.value)
		if v == "" {
			v = t.def
		}
		var age time.Duration
		if !strings.EqualFold(v, "off") {
			d, err := wire.ParseDuration(v)
			switch {
			case err == nil && d == 0: // "0", "0d": off
			case err != nil:
				return p, fmt.Errorf(`[retention] %s = %q: %w (or "off" to keep rows forever)`, t.key, t.value, err)
			case d < MinRetention:
				return p, fmt.Errorf(`[retention] %s = %q: shorter than %v, which looks like a unit mistake; use hours or days ("12h", "90d"), or "off"`, t.key, t.value, MinRetention)
			case t.key == "audit" && d < MinAuditRetention && !r.AllowShortAudit:
				return p, fmt.Errorf(`[retention] audit = %q: below the %dd floor (what the AUDIT stream keeps); set allow_short_audit = true to trim the audit log sooner, or "off" to keep it`, t.value, MinAuditRetention/(24*time.Hour))
			}
			age = d
		}
		p.Tables = append(p.Tables, TableRetention{Table: t.key, MaxAge: age})
	}
	if v := strings.TrimSpace(r.Interval); v != "" {
		d, err := wire.ParseDuration(v)
		if err != nil {
			return p, fmt.Errorf("[retention] interval = %q: %w", r.Interval, err)
		}
		if d < time.Minute || d > 24*time.Hour {
			return p, fmt.Errorf("[retention] interval = %q: expected 1m to 24h", r.Interval)
		}
		p.Interval = d
	}
	switch {
	case r.BatchSize == 0:
	case r.BatchSize < 1 || r.BatchSize > 100_000:
		return p, fmt.Errorf("[retention] batch_size = %d: expected 1 to 100000", r.BatchSize)
	default:
		p.BatchSize = r.BatchSize
	}
	return p, nil
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
		// A wrong type (results = 90 for "90d") names the Go field;
		// name the TOML key too.
		var de *toml.DecodeError
		if errors.As(err, &de) && len(de.Key()) > 0 {
			return nil, fmt.Errorf("%s: %w", strings.Join(de.Key(), "."), err)
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
	if err := c.NATS.checkReplicas(); err != nil {
		return err
	}
	if err := c.checkTLS(); err != nil {
		return err
	}
	if err := c.NATS.checkAuth(); err != nil {
		return err
	}
	if _, err := c.Retention.Policy(); err != nil {
		return err
	}
	return nil
}

// checkReplicas refuses counts that would not
// do what an operator expects. Even counts are refused because they buy no
// failure tolerance (R2 stops taking writes when either node is down, R4
// survives one failure like R3) while costing a copy; a count above 1 with
// the embedded broker is refused because a single server cannot hold more
// than one copy, and JetStream would refuse every resource at start.
func (n *NATS) checkReplicas() error {
	switch {
	case n.Replicas == 0:
		// Unset: keep what exists (see the field).
	case n.Replicas != 1 && n.Replicas != 3 && n.Replicas != 5:
		return fmt.Errorf("[nats] replicas = %d: expected 1, 3 or 5 (3 on a cluster of three nodes: one node may fail)", n.Replicas)
	}
	if n.Replicas > 1 && *n.Embedded {
		return fmt.Errorf("[nats] replicas = %d needs a NATS cluster: set embedded = false and urls = [...] listing its nodes (the embedded broker is a single server)", n.Replicas)
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
