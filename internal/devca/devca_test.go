package devca_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/devca"
	"github.com/kanade-project/kanade/internal/winetest"
)

func load(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func cert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(load(t, path))
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func key(t *testing.T, path string) *ecdsa.PrivateKey {
	t.Helper()
	block, _ := pem.Decode(load(t, path))
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*ecdsa.PrivateKey)
}

func verify(ca, leaf *x509.Certificate, host string) error {
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host})
	return err
}

func TestGenerate(t *testing.T) {
	dir := filepath.Join(winetest.TempDir(t), "tls")
	hosts := []string{"localhost", "127.0.0.1", "::1", "kanade.lab.internal", "192.0.2.10"}
	p, err := devca.Generate(dir, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		for path, want := range map[string]os.FileMode{p.Dir: 0o700, p.CAKey: 0o600, p.Key: 0o600, p.CA: 0o644, p.Cert: 0o644} {
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != want {
				t.Errorf("%s: mode %v, want %v", path, st.Mode().Perm(), want)
			}
		}
	}
	ca, leaf := cert(t, p.CA), cert(t, p.Cert)
	if !ca.IsCA || ca.PublicKeyAlgorithm != x509.ECDSA || key(t, p.CAKey).Curve != elliptic.P256() {
		t.Errorf("CA: IsCA %v, algorithm %v: want an ECDSA P-256 CA", ca.IsCA, ca.PublicKeyAlgorithm)
	}
	if !key(t, p.Key).PublicKey.Equal(leaf.PublicKey) {
		t.Error("server.key is not the key of server.pem")
	}
	for _, h := range hosts {
		if err := verify(ca, leaf, h); err != nil {
			t.Errorf("server certificate for %s: %v", h, err)
		}
	}
	if err := verify(ca, leaf, "elsewhere.example"); err == nil {
		t.Error("server certificate verifies for a host it was not made for")
	}

	// The CA may sign only for its hosts: a certificate for anything else,
	// signed with its key, is refused by every verifier.
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	evilTmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "bank"}, DNSNames: []string{"bank.example"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, evilTmpl, ca, k.Public(), key(t, p.CAKey))
	if err != nil {
		t.Fatal(err)
	}
	evil, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(ca, evil, "bank.example"); err == nil || !strings.Contains(err.Error(), "constraint") {
		t.Errorf("a certificate for bank.example signed by the dev CA: %v, want a name constraint error", err)
	}
}

func TestGenerateNeverOverwrites(t *testing.T) {
	for _, name := range []string{devca.CAFile, devca.CAKeyFile, devca.CertFile, devca.CertKeyFile} {
		t.Run(name, func(t *testing.T) {
			dir := winetest.TempDir(t)
			existing := filepath.Join(dir, name)
			if err := os.WriteFile(existing, []byte("precious"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := devca.Generate(dir, []string{"localhost"})
			if err == nil || !strings.Contains(err.Error(), existing) || !strings.Contains(err.Error(), "refusing to overwrite") {
				t.Fatalf("Generate over %s: %v", name, err)
			}
			if string(load(t, existing)) != "precious" {
				t.Error("the existing file changed")
			}
		})
	}
}

func TestBadHosts(t *testing.T) {
	for _, h := range []string{"", "*.example.com", "a b", "-lead.example", "under_score", strings.Repeat("a", 64) + ".example"} {
		if _, err := devca.Generate(winetest.TempDir(t), []string{"localhost", h}); err == nil || !strings.Contains(err.Error(), "DNS name") {
			t.Errorf("host %q: %v, want an error saying what a host is", h, err)
		}
	}
}

func TestEnsure(t *testing.T) {
	hosts := []string{"localhost", "127.0.0.1"}
	dir := filepath.Join(winetest.TempDir(t), "tls")
	p, err := devca.Ensure(dir, hosts)
	if err != nil {
		t.Fatal(err)
	}
	ca, certPEM := load(t, p.CA), load(t, p.Cert)

	steps := []struct {
		name      string
		change    func()
		hosts     []string
		reissued  bool
		wantError string
	}{
		{name: "second run reuses everything", change: func() {}, hosts: hosts},
		{name: "a lost server certificate is issued again by the same CA", change: func() { os.Remove(p.Cert) }, hosts: hosts, reissued: true},
		{name: "a server key of another pair is replaced", change: func() {
			other, err := devca.Generate(winetest.TempDir(t), hosts)
			if err != nil {
				t.Fatal(err)
			}
			os.Remove(p.Key)
			if err := os.WriteFile(p.Key, load(t, other.Key), 0o600); err != nil {
				t.Fatal(err)
			}
		}, hosts: hosts, reissued: true},
		{name: "fewer hosts: the certificate still names them", change: func() {}, hosts: hosts[:1]},
		{name: "a host the CA was not made for", change: func() {}, hosts: []string{"localhost", "new.example"}, wantError: "delete " + dir},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.change()
			before := certPEM
			_, err := devca.Ensure(dir, s.hosts)
			if s.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), s.wantError) {
					t.Fatalf("Ensure: %v, want an error with %q", err, s.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(load(t, p.CA), ca) {
				t.Fatal("the CA changed: its clients would stop connecting")
			}
			certPEM = load(t, p.Cert)
			if got := !bytes.Equal(certPEM, before); got != s.reissued {
				t.Errorf("server certificate re-issued: %v, want %v", got, s.reissued)
			}
			leaf := cert(t, p.Cert)
			if !key(t, p.Key).PublicKey.Equal(leaf.PublicKey) {
				t.Error("server.key is not the key of server.pem")
			}
			for _, h := range s.hosts {
				if err := verify(cert(t, p.CA), leaf, h); err != nil {
					t.Errorf("%s: %v", h, err)
				}
			}
		})
	}
}
