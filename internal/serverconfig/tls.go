package serverconfig

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/kanade-project/kanade/internal/tlsconf"
)

// TLS in server.toml:
//
//	[nats]
//	tls_cert_file = "/etc/kanade/tls/server.pem" # chain, leaf first (PEM)
//	tls_key_file  = "/etc/kanade/tls/server.key" # its key (PEM, mode 0600)
//	ca_file       = "/etc/kanade/tls/ca.pem"     # what this server's own
//	                                             # clients trust (see below)
//	[http]
//	tls_cert_file = "/etc/kanade/tls/server.pem"
//	tls_key_file  = "/etc/kanade/tls/server.key"
//
// With [nats] tls_cert_file the embedded broker accepts TLS clients only.
// ca_file is the CA bundle the server verifies a broker against when it is
// a client: of an external broker or cluster (urls), and for the dev
// agent's connection to the embedded broker under --dev. The server's own
// connection to its embedded broker is in-process and needs no CA.
// With [http] tls_cert_file the API and dashboard serve HTTPS only
// (TLS 1.2 or later). The files are read when the server starts.

// TLS is the TLS material named in server.toml, read from its files.
type TLS struct {
	// Broker is what the embedded broker serves; nil: plaintext.
	Broker *tls.Config
	// HTTP is what the API and dashboard serve; nil: plain HTTP.
	HTTP *tls.Config
	// Client verifies a broker this server connects to as a client; nil
	// leaves it to the system roots (when the broker asks for TLS).
	Client *tls.Config
}

// checkTLS checks what can be checked without reading files: pairs come
// together, and each option applies to the broker in use.
func (c *Config) checkTLS() error {
	if (c.NATS.TLSCertFile == "") != (c.NATS.TLSKeyFile == "") {
		return errors.New("[nats] tls_cert_file and tls_key_file go together: set both (the certificate chain and its private key, in PEM) or neither")
	}
	if (c.HTTP.TLSCertFile == "") != (c.HTTP.TLSKeyFile == "") {
		return errors.New("[http] tls_cert_file and tls_key_file go together: set both (the certificate chain and its private key, in PEM) or neither")
	}
	if c.NATS.TLSCertFile != "" && !*c.NATS.Embedded {
		return errors.New("[nats] tls_cert_file is for the embedded broker: configure an external server's TLS in its own configuration, and set ca_file here to verify it")
	}
	if c.NATS.CAFile != "" && *c.NATS.Embedded && c.NATS.TLSCertFile == "" {
		return errors.New("[nats] ca_file verifies a TLS broker, but the embedded broker serves no TLS: set tls_cert_file and tls_key_file too, or remove ca_file")
	}
	return nil
}

// LoadTLS reads the certificates, keys and CA bundle named in the config.
// Each error names the option and the file, and says what is expected.
func (c *Config) LoadTLS() (TLS, error) {
	var t TLS
	var err error
	if c.NATS.TLSCertFile != "" {
		if t.Broker, err = tlsconf.Server(c.NATS.TLSCertFile, c.NATS.TLSKeyFile); err != nil {
			return t, fmt.Errorf("[nats] tls_cert_file / tls_key_file: %w", err)
		}
	}
	if c.HTTP.TLSCertFile != "" {
		if t.HTTP, err = tlsconf.Server(c.HTTP.TLSCertFile, c.HTTP.TLSKeyFile); err != nil {
			return t, fmt.Errorf("[http] tls_cert_file / tls_key_file: %w", err)
		}
	}
	if c.NATS.CAFile != "" {
		if t.Client, err = tlsconf.Client(tlsconf.ClientOptions{CAFile: c.NATS.CAFile}); err != nil {
			return t, fmt.Errorf("[nats] ca_file: %w", err)
		}
	}
	return t, nil
}
