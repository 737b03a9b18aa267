// Package tlsconf builds the TLS configurations of kanade's connections from
// PEM files: the client side (agent, CLI, backend) trusts a configured CA
// bundle and may pin the server's public key; the server side (embedded
// broker, HTTP API) serves a certificate and key.
//
// Every configuration it returns requires TLS 1.2 or later and keeps the
// standard chain and host-name verification (it never sets
// InsecureSkipVerify): a pin narrows what a verified chain may end in, it
// never replaces the chain. Every error names the file at fault and says
// what was expected in it.
//
// It depends on the standard library only, so the agent may import it.
package tlsconf

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// MinVersion is the oldest TLS version accepted on either side.
const MinVersion = tls.VersionTLS12

// ClientOptions say how a client verifies the server.
type ClientOptions struct {
	// CAFile is a PEM bundle of the CA certificates the server's chain
	// must end in. When set, only these are trusted, not the system
	// roots; empty trusts the system roots.
	CAFile string
	// Pins are SHA-256 fingerprints of public keys (see ParsePin). When
	// any is set, a verified server is accepted only if its own (leaf)
	// certificate's key is one of them.
	Pins []string
}

// Enabled reports whether o asks for anything: a CA or a pin.
func (o ClientOptions) Enabled() bool { return o.CAFile != "" || len(o.Pins) > 0 }

// Client returns the client configuration o describes. The server name is
// left empty: nats.go and net/http set it from the host of the URL dialled,
// so that host must be named by the server's certificate.
func Client(o ClientOptions) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: MinVersion}
	if o.CAFile != "" {
		pool, err := LoadCAs(o.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if len(o.Pins) > 0 {
		pins := make([][sha256.Size]byte, 0, len(o.Pins))
		for i, s := range o.Pins {
			p, err := ParsePin(s)
			if err != nil {
				return nil, fmt.Errorf("pin %d: %w", i+1, err)
			}
			pins = append(pins, p)
		}
		// VerifyConnection runs after the standard verification has
		// succeeded (and on resumed sessions too, which
		// VerifyPeerCertificate would miss).
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("tlsconf: the server sent no certificate")
			}
			leaf := cs.PeerCertificates[0]
			if slices.Contains(pins, sha256.Sum256(leaf.RawSubjectPublicKeyInfo)) {
				return nil
			}
			return fmt.Errorf("tlsconf: the server's certificate %q has public key pin %s, which is not one of the %d configured pins (a new key on the server needs its pin added first; print it with `kanade tls pin CERT.pem`)",
				leaf.Subject.String(), Pin(leaf), len(pins))
		}
	}
	return cfg, nil
}

// Pin is the fingerprint of cert's public key: the SHA-256 of its
// SubjectPublicKeyInfo in 64 lower-case hex digits. It survives a renewal
// that keeps the key, unlike a fingerprint of the whole certificate.
func Pin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// ParsePin parses a pin as printed by Pin. Upper case and colons between
// bytes (as openssl prints fingerprints) are accepted.
func ParsePin(s string) ([sha256.Size]byte, error) {
	var p [sha256.Size]byte
	h := strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return p, fmt.Errorf("%q is not a public key pin: expected 64 hex digits, the SHA-256 of the server certificate's public key (print it with `kanade tls pin CERT.pem`)", s)
	}
	copy(p[:], b)
	return p, nil
}

// LoadCAs reads a PEM bundle of CA certificates.
func LoadCAs(file string) (*x509.CertPool, error) {
	certs, err := LoadCertificates(file)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// LoadCertificates reads every certificate of a PEM file, in order. A
// file with a private key in it is refused: certificates travel to every
// client, and a key that travels with them is no longer private.
func LoadCertificates(file string) ([]*x509.Certificate, error) {
	b, err := readFile(file, "PEM certificates")
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for rest := b; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if strings.Contains(block.Type, "PRIVATE KEY") {
			return nil, fmt.Errorf("%s holds a private key: expected certificates only (keep keys out of files that are handed to clients)", file)
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", file, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate: expected one or more \"-----BEGIN CERTIFICATE-----\" blocks", file)
	}
	return certs, nil
}

// Server returns a server configuration that serves the certificate chain
// in certFile (leaf first, then any intermediates) with the private key in
// keyFile. It refuses, with the reason, a key readable by group or others
// (on Unix), a key that is not the certificate's, a certificate outside its
// validity period, one that names no host, or one not meant for servers:
// each would otherwise surface only as a vague handshake failure on every
// client.
func Server(certFile, keyFile string) (*tls.Config, error) {
	cert, err := LoadKeyPair(certFile, keyFile, time.Now())
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: MinVersion, Certificates: []tls.Certificate{cert}}, nil
}

// LoadKeyPair reads and checks a certificate chain and its key (see
// Server) as of now.
func LoadKeyPair(certFile, keyFile string, now time.Time) (tls.Certificate, error) {
	var none tls.Certificate
	if certFile == "" || keyFile == "" {
		return none, errors.New("a TLS certificate needs both a certificate file and a key file")
	}
	certPEM, err := readFile(certFile, "the server certificate in PEM")
	if err != nil {
		return none, err
	}
	leafBlock := firstBlock(certPEM)
	switch {
	case leafBlock == nil:
		return none, fmt.Errorf("%s holds no PEM data: expected the server certificate (then any intermediates) as \"-----BEGIN CERTIFICATE-----\" blocks", certFile)
	case strings.Contains(leafBlock.Type, "PRIVATE KEY"):
		return none, fmt.Errorf("%s holds a private key, not a certificate: are the certificate and key files swapped?", certFile)
	case leafBlock.Type != "CERTIFICATE":
		return none, fmt.Errorf("%s starts with a %q PEM block: expected the server certificate first", certFile, leafBlock.Type)
	}
	if err := checkPrivate(keyFile); err != nil {
		return none, err
	}
	keyPEM, err := readFile(keyFile, "the certificate's private key in PEM")
	if err != nil {
		return none, err
	}
	keyBlock := firstBlock(keyPEM)
	switch {
	case keyBlock == nil:
		return none, fmt.Errorf("%s holds no PEM data: expected a \"-----BEGIN PRIVATE KEY-----\" (or EC/RSA PRIVATE KEY) block", keyFile)
	case keyBlock.Type == "CERTIFICATE":
		return none, fmt.Errorf("%s holds a certificate, not a private key: are the certificate and key files swapped?", keyFile)
	}
	leaf, err := x509.ParseCertificate(leafBlock.Bytes)
	if err != nil {
		return none, fmt.Errorf("%s: the first certificate does not parse: %w", certFile, err)
	}
	if key, err := parseKey(keyBlock); err != nil {
		return none, fmt.Errorf("%s: %w", keyFile, err)
	} else if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(leaf.PublicKey) {
		return none, fmt.Errorf("%s and %s do not belong together: the private key is not the one of the certificate (its key pin is %s)", certFile, keyFile, Pin(leaf))
	}
	if err := checkLeaf(certFile, leaf, now); err != nil {
		return none, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return none, fmt.Errorf("%s with %s: %w", certFile, keyFile, err)
	}
	return pair, nil
}

func checkLeaf(file string, leaf *x509.Certificate, now time.Time) error {
	const day = "2006-01-02 15:04 MST"
	switch {
	case now.After(leaf.NotAfter):
		return fmt.Errorf("%s expired on %s: renew it", file, leaf.NotAfter.UTC().Format(day))
	case now.Before(leaf.NotBefore):
		return fmt.Errorf("%s is not valid before %s (is this machine's clock right?)", file, leaf.NotBefore.UTC().Format(day))
	case len(leaf.DNSNames) == 0 && len(leaf.IPAddresses) == 0:
		return fmt.Errorf("%s names no host: clients match the host they dial against the certificate's DNS and IP subject alternative names, and it has none", file)
	case len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny):
		return fmt.Errorf("%s is not valid for TLS servers: its extended key usage lacks serverAuth", file)
	}
	return nil
}

func parseKey(b *pem.Block) (crypto.Signer, error) {
	var key any
	var err error
	switch b.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("the private key is encrypted: the server reads it unattended, so it must be stored unencrypted (and readable by its owner only)")
	default:
		return nil, fmt.Errorf("a %q PEM block is not a private key: expected PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY", b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("the private key does not parse: %w", err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
	return s, nil
}

func firstBlock(b []byte) *pem.Block {
	block, _ := pem.Decode(bytes.TrimSpace(b))
	return block
}

func readFile(file, expected string) ([]byte, error) {
	b, err := os.ReadFile(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%s does not exist: expected %s", file, expected)
	case err != nil:
		return nil, err
	}
	return b, nil
}

// checkPrivate refuses a key file that others can read. On Windows the mode
// bits say nothing about access (ACLs do), so nothing is checked there.
func checkPrivate(file string) error {
	st, err := os.Stat(file)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s does not exist: expected the certificate's private key in PEM", file)
	}
	if err != nil {
		return err
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("private key %s is readable by group or others (mode %v): chmod 600 it", file, st.Mode().Perm())
	}
	return nil
}
