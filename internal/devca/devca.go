// Package devca makes a throwaway certificate authority and a server
// certificate for one machine, so that kanade can be tried with TLS on a
// laptop (`kanade tls dev`, `kanade server --dev --tls`) without a real PKI.
//
// The CA is an ECDSA P-256 key whose certificate is name-constrained to the
// hosts it was made for: a copy of its key that leaks can mint certificates
// for those hosts only, not for any site a machine that trusts ca.pem
// visits. Private keys are written with mode 0600 and never printed;
// Generate never overwrites an existing file.
package devca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File names inside a dev CA directory.
const (
	CAFile      = "ca.pem"
	CAKeyFile   = "ca.key"
	CertFile    = "server.pem"
	CertKeyFile = "server.key"
)

// Validity periods. The server certificate is re-issued by Ensure well
// before it ends; the CA outlives many of them, so that clients configured
// with ca.pem keep working.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	ServerValidity = 2 * 365 * 24 * time.Hour
	// RenewBefore is how close to its end Ensure re-issues a server
	// certificate.
	RenewBefore = 30 * 24 * time.Hour
	// backdate covers clocks a little behind this one.
	backdate = time.Hour
)

// Paths are the files of a dev CA directory.
type Paths struct {
	Dir string
	// CA is the CA certificate: what agents and the CLI trust.
	CA string
	// CAKey is the CA's private key (0600); it stays in Dir.
	CAKey string
	// Cert and Key are the server certificate and its key (0600).
	Cert, Key string
}

// PathsIn names the files of a dev CA in dir.
func PathsIn(dir string) Paths {
	return Paths{Dir: dir, CA: filepath.Join(dir, CAFile), CAKey: filepath.Join(dir, CAKeyFile),
		Cert: filepath.Join(dir, CertFile), Key: filepath.Join(dir, CertKeyFile)}
}

// DefaultHosts are localhost, 127.0.0.1, ::1 and this machine's host name
// (when it is a valid DNS name), then extra, without duplicates.
func DefaultHosts(extra ...string) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && CheckHost(h) == nil {
		hosts = append(hosts, strings.ToLower(h))
	}
	for _, h := range extra {
		h = strings.ToLower(strings.TrimSpace(h))
		if !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// CheckHost accepts an IP address or a DNS name (letters, digits, hyphens,
// dots; no wildcard).
func CheckHost(h string) error {
	if net.ParseIP(h) != nil {
		return nil
	}
	bad := fmt.Errorf("%q is not a host name: expected a DNS name (like kanade.example.internal) or an IP address", h)
	if h == "" || len(h) > 253 {
		return bad
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return bad
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return bad
			}
		}
	}
	return nil
}

// Generate creates dir (0700) and writes a new CA and a server certificate
// valid for hosts. It refuses to touch a directory that already holds any
// of the four files: replacing a CA would break every client that trusts
// the old one.
func Generate(dir string, hosts []string) (Paths, error) {
	p := PathsIn(dir)
	if err := checkHosts(hosts); err != nil {
		return p, err
	}
	for _, f := range []string{p.CA, p.CAKey, p.Cert, p.Key} {
		if _, err := os.Lstat(f); err == nil {
			return p, fmt.Errorf("%s already exists; refusing to overwrite a CA or key (clients that trust it would stop connecting): choose another directory", f)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return p, err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return p, err
	}
	now := time.Now()
	caKey, caCert, caDER, err := newCA(hosts, now)
	if err != nil {
		return p, err
	}
	if err := writeKey(p.CAKey, caKey); err != nil {
		return p, err
	}
	if err := writeNew(p.CA, pemCert(caDER), 0o644); err != nil {
		return p, err
	}
	return p, issue(p, caCert, caKey, hosts, now)
}

// Ensure returns the dev CA in dir, generating it on first use. An existing
// CA is kept; the server certificate is issued again when it is missing,
// unreadable, not the CA's, ends within RenewBefore or does not name every
// host. A CA that may not sign for one of hosts (its name constraints came
// from the hosts of its first run) is an error that says how to start over.
func Ensure(dir string, hosts []string) (Paths, error) {
	p := PathsIn(dir)
	if err := checkHosts(hosts); err != nil {
		return p, err
	}
	_, errCA := os.Stat(p.CA)
	_, errKey := os.Stat(p.CAKey)
	if errors.Is(errCA, fs.ErrNotExist) && errors.Is(errKey, fs.ErrNotExist) {
		for _, f := range []string{p.Cert, p.Key} {
			if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return p, err
			}
		}
		return Generate(dir, hosts)
	}
	caCert, caKey, err := loadCA(p)
	if err != nil {
		return p, err
	}
	now := time.Now()
	if now.Add(RenewBefore).After(caCert.NotAfter) {
		return p, fmt.Errorf("the dev CA %s ends on %s: delete %s to make a new one (and give the new ca.pem to its clients)", p.CA, caCert.NotAfter.Format(time.DateOnly), dir)
	}
	for _, h := range hosts {
		if !permits(caCert, h) {
			return p, fmt.Errorf("the dev CA in %s was made for %s, not %s: delete %s to make a new one (and give the new ca.pem to its clients)",
				dir, strings.Join(constrainedHosts(caCert), ", "), h, dir)
		}
	}
	if serverOK(p, caCert, hosts, now) {
		return p, nil
	}
	for _, f := range []string{p.Cert, p.Key} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return p, err
		}
	}
	return p, issue(p, caCert, caKey, hosts, now)
}

func checkHosts(hosts []string) error {
	if len(hosts) == 0 {
		return errors.New("devca: no host to issue the server certificate for")
	}
	for _, h := range hosts {
		if err := CheckHost(h); err != nil {
			return err
		}
	}
	return nil
}

func split(hosts []string) (dns []string, ips []net.IP) {
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, strings.ToLower(strings.TrimSuffix(h, ".")))
		}
	}
	return dns, ips
}

func newCA(hosts []string, now time.Time) (*ecdsa.PrivateKey, *x509.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	dns, ips := split(hosts)
	var ranges []*net.IPNet
	for _, ip := range ips {
		bits := 8 * net.IPv6len
		if ip.To4() != nil {
			ip, bits = ip.To4(), 8*net.IPv4len
		}
		ranges = append(ranges, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "kanade development CA (" + host + ")", Organization: []string{"kanade (development only)"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		// Only the hosts it was made for: see the package comment.
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         dns,
		PermittedIPRanges:           ranges,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("devca: creating the CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	return key, cert, der, nil
}

// issue writes a new server key and certificate signed by the CA.
func issue(p Paths, ca *x509.Certificate, caKey crypto.Signer, hosts []string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	dns, ips := split(hosts)
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "kanade development server", Organization: []string{"kanade (development only)"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(ServerValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return fmt.Errorf("devca: issuing the server certificate: %w", err)
	}
	if err := writeKey(p.Key, key); err != nil {
		return err
	}
	return writeNew(p.Cert, pemCert(der), 0o644)
}

func loadCA(p Paths) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(p.CA)
	if err != nil {
		return nil, nil, fmt.Errorf("the dev CA is incomplete (delete %s to start over): %w", p.Dir, err)
	}
	keyPEM, err := os.ReadFile(p.CAKey)
	if err != nil {
		return nil, nil, fmt.Errorf("the dev CA is incomplete (delete %s to start over): %w", p.Dir, err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, fmt.Errorf("%s or %s is not PEM: delete %s to start over", p.CA, p.CAKey, p.Dir)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", p.CA, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", p.CAKey, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%s is not the key of %s: delete %s to start over", p.CAKey, p.CA, p.Dir)
	}
	return cert, key, nil
}

// serverOK reports whether the server certificate on disk can be served
// as is: its key is there, it chains to ca, names every host and lasts.
func serverOK(p Paths, ca *x509.Certificate, hosts []string, now time.Time) bool {
	certPEM, err1 := os.ReadFile(p.Cert)
	keyPEM, err2 := os.ReadFile(p.Key)
	if err1 != nil || err2 != nil {
		return false
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return false
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil || now.Add(RenewBefore).After(cert.NotAfter) || cert.CheckSignatureFrom(ca) != nil {
		return false
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return false
	}
	if key, ok := k.(*ecdsa.PrivateKey); !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return false
	}
	for _, h := range hosts {
		if cert.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func permits(ca *x509.Certificate, h string) bool {
	if ip := net.ParseIP(h); ip != nil {
		return slices.ContainsFunc(ca.PermittedIPRanges, func(n *net.IPNet) bool { return n.Contains(ip) })
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	return slices.ContainsFunc(ca.PermittedDNSDomains, func(d string) bool {
		return h == d || strings.HasSuffix(h, "."+d)
	})
}

func constrainedHosts(ca *x509.Certificate) []string {
	out := slices.Clone(ca.PermittedDNSDomains)
	for _, n := range ca.PermittedIPRanges {
		out = append(out, n.IP.String())
	}
	return out
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		// crypto/rand does not fail on supported platforms.
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// writeNew creates path, failing if it exists, so that no key is ever
// silently replaced.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists; refusing to overwrite it", path)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		_ = os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
