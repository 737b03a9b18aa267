package agentconfig

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"

	"github.com/kanade-project/kanade/internal/tlsconf"
)

// TLS to the broker, in [agent]:
//
//	nats_ca_file = '/etc/kanade/broker-ca.pem'
//	nats_pin_sha256 = ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
//
// nats_ca_file is a PEM bundle of the CA certificates the broker's
// certificate must chain to. When it is set the agent connects with TLS
// only (a broker that offers none is refused) and trusts that bundle only,
// not the system's roots. The host of each nats_urls entry must be named
// by the broker's certificate, as with any TLS client.
//
// nats_pin_sha256 lists public key pins: the SHA-256 of the broker
// certificate's SubjectPublicKeyInfo, 64 hex digits (colons allowed), as
// `kanade tls pin server.pem` prints them. When set, a broker whose chain
// verifies is still refused unless its own certificate's key is one of
// them; list the next key's pin before the broker changes keys.

// checkTLS checks the pins' syntax when the file is parsed, so that a typo
// is reported with the other config errors rather than on first connect.
func (a *Agent) checkTLS() error {
	for i, p := range a.NATSPins {
		if _, err := tlsconf.ParsePin(p); err != nil {
			return fmt.Errorf("[agent] nats_pin_sha256 entry %d: %w", i+1, err)
		}
	}
	return nil
}

// NATSTLS returns the TLS configuration of the broker connection, or nil
// when neither nats_ca_file nor nats_pin_sha256 is set (then a tls:// URL,
// or a broker that demands TLS, is verified against the system's roots).
func (c *Config) NATSTLS() (*tls.Config, error) {
	o := tlsconf.ClientOptions{CAFile: c.Agent.NATSCAFile, Pins: c.Agent.NATSPins}
	if !o.Enabled() {
		return nil, nil
	}
	if o.CAFile != "" {
		if err := checkTrustFile(o.CAFile); err != nil {
			return nil, fmt.Errorf("[agent] nats_ca_file: %w", err)
		}
	}
	cfg, err := tlsconf.Client(o)
	if err != nil {
		return nil, fmt.Errorf("[agent] nats_ca_file / nats_pin_sha256: %w", err)
	}
	return cfg, nil
}

// checkTrustFile refuses a trust anchor that others may change: whoever
// can write it can make the agent, which runs scripts as SYSTEM or root,
// trust their broker. On Windows the mode bits say nothing (ACLs do).
func checkTrustFile(path string) error {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s does not exist: expected the CA certificate(s) that signed the broker's certificate, in PEM", path)
	}
	if err != nil {
		return err
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %v): whoever can change it decides which broker this agent trusts; chmod go-w it", path, st.Mode().Perm())
	}
	return nil
}
