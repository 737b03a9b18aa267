package serverconfig

import "fmt"

// Values of [nats] auth.
const (
	// AuthToken: one shared secret (token_file or KANADE_NATS_TOKEN), or
	// none. Every client that has it has every right: any agent could
	// publish a command to every other one. Fine for a lab; the default
	// so that `kanade server --dev` and existing set-ups keep working.
	AuthToken = "token"
	// AuthNKeys: every client authenticates with its own NKey and is held
	// to its role (internal/natsauth): agents may publish only their own
	// data and read only their own commands, config and replies, the CLI
	// cannot forge agent data, and each agent can be revoked alone. The
	// server creates the backend and operator keys under
	// <data_dir>/nkeys on first start; agents get theirs from `kanade
	// agent enroll`.
	AuthNKeys = "nkeys"
)

// checkAuth validates [nats] auth; empty means AuthToken.
func (n *NATS) checkAuth() error {
	switch n.Auth {
	case "":
		n.Auth = AuthToken
	case AuthToken, AuthNKeys:
	default:
		return fmt.Errorf("[nats] auth = %q: expected %q (one shared token, every client has every right) or %q (per-client NKeys, permissions per role)", n.Auth, AuthToken, AuthNKeys)
	}
	return nil
}

// NKeys reports whether clients authenticate with NKeys and are held to
// their roles ([nats] auth = "nkeys").
func (c *Config) NKeys() bool { return c.NATS.Auth == AuthNKeys }
