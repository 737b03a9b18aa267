package broker

import (
	"crypto/tls"

	"github.com/nats-io/nats-server/v2/server"
)

// TLSTimeout bounds a client's TLS handshake. nats-server's default (2 s)
// is short for an endpoint on a slow link or a loaded machine, where a
// handshake that times out is retried, costing the broker another one.
const TLSTimeout = 5.0 // seconds

// applyTLS makes the client port TLS-only when cfg is set: a client that
// does not start TLS after the INFO line is disconnected. Clients are not
// asked for certificates (TLSVerify false): they authenticate with the
// token or their credentials, over the encrypted connection.
func applyTLS(o *server.Options, cfg *tls.Config) {
	if cfg == nil {
		return
	}
	o.TLS = true
	o.TLSConfig = cfg
	o.TLSVerify = false
	o.TLSTimeout = TLSTimeout
}
