package brokertest

import (
	"crypto/tls"
	"testing"
)

// StartTLS starts a broker whose client port speaks TLS only, serving
// serverTLS, and bootstraps every kanade resource. Connect and JetStream
// verify it with clientTLS (which must trust serverTLS's certificate);
// URL stays nats://, which nats.go upgrades to TLS at the server's
// request.
func StartTLS(t testing.TB, serverTLS, clientTLS *tls.Config) *Server {
	t.Helper()
	s := &Server{t: t, dataDir: t.TempDir(), listen: freeAddr(t), tls: serverTLS, clientTLS: clientTLS}
	s.Restart()
	t.Cleanup(s.Stop)
	Bootstrap(t, s)
	return s
}
