package tlsconf_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/devca"
	"github.com/kanade-project/kanade/internal/tlsconf"
	"github.com/kanade-project/kanade/internal/winetest"
)

// devCA makes a development CA with a server certificate for localhost
// and 127.0.0.1 in a new temporary directory.
func devCA(t *testing.T) devca.Paths {
	t.Helper()
	p, err := devca.Generate(winetest.TempDir(t), []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// selfSigned writes a self-signed certificate made from tmpl and its key
// (mode 0600) into dir and returns their paths.
func selfSigned(t *testing.T, dir string, tmpl *x509.Certificate) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(1)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	write(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	write(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

func write(t *testing.T, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestServerRefusesBadFilesWithTheReason(t *testing.T) {
	a, b := devCA(t), devCA(t)
	dir := winetest.TempDir(t)
	now := time.Now()
	expired, expiredKey := selfSigned(t, mkdir(t, dir, "expired"), &x509.Certificate{
		Subject: pkix.Name{CommonName: "old"}, DNSNames: []string{"localhost"},
		NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)})
	future, futureKey := selfSigned(t, mkdir(t, dir, "future"), &x509.Certificate{
		Subject: pkix.Name{CommonName: "early"}, DNSNames: []string{"localhost"},
		NotBefore: now.Add(24 * time.Hour), NotAfter: now.Add(48 * time.Hour)})
	noSAN, noSANKey := selfSigned(t, mkdir(t, dir, "nosan"), &x509.Certificate{
		Subject: pkix.Name{CommonName: "localhost"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	client, clientKey := selfSigned(t, mkdir(t, dir, "client"), &x509.Certificate{
		Subject: pkix.Name{CommonName: "client"}, DNSNames: []string{"localhost"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	notPEM := filepath.Join(dir, "not.pem")
	write(t, notPEM, []byte("hello\n"), 0o600)
	loose := filepath.Join(dir, "loose.key")
	write(t, loose, read(t, a.Key), 0o644)
	rsaLabel := filepath.Join(dir, "wrongtype.key")
	write(t, rsaLabel, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}), 0o600)

	for _, tc := range []struct {
		name      string
		cert, key string
		want      []string
		unixOnly  bool
	}{
		{"missing certificate", filepath.Join(dir, "nope.pem"), a.Key, []string{"nope.pem does not exist", "expected the server certificate in PEM"}, false},
		{"missing key", a.Cert, filepath.Join(dir, "nope.key"), []string{"nope.key does not exist", "private key"}, false},
		{"key and certificate of different pairs", a.Cert, b.Key, []string{a.Cert, b.Key, "do not belong together"}, false},
		{"files swapped", a.Key, a.Cert, []string{"swapped"}, false},
		{"certificate file not PEM", notPEM, a.Key, []string{notPEM, "no PEM data", "BEGIN CERTIFICATE"}, false},
		{"key file not PEM", a.Cert, notPEM, []string{notPEM, "no PEM data", "PRIVATE KEY"}, false},
		{"key file with another block", a.Cert, rsaLabel, []string{rsaLabel, `"PUBLIC KEY"`, "not a private key"}, false},
		{"expired", expired, expiredKey, []string{expired, "expired on", "renew"}, false},
		{"not yet valid", future, futureKey, []string{future, "not valid before", "clock"}, false},
		{"no subject alternative name", noSAN, noSANKey, []string{noSAN, "names no host"}, false},
		{"client certificate", client, clientKey, []string{client, "serverAuth"}, false},
		{"key readable by others", a.Cert, loose, []string{loose, "readable by group or others", "chmod 600"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.unixOnly && runtime.GOOS == "windows" {
				t.Skip("mode bits say nothing on Windows")
			}
			_, err := tlsconf.Server(tc.cert, tc.key)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if _, err := tlsconf.Server(a.Cert, a.Key); err != nil {
		t.Fatalf("a good pair: %v", err)
	}
}

func mkdir(t *testing.T, parent, name string) string {
	t.Helper()
	d := filepath.Join(parent, name)
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestClientRefusesBadCAFiles(t *testing.T) {
	a := devCA(t)
	dir := winetest.TempDir(t)
	withKey := filepath.Join(dir, "bundle.pem")
	write(t, withKey, append(read(t, a.CA), read(t, a.CAKey)...), 0o644)
	empty := filepath.Join(dir, "empty.pem")
	write(t, empty, []byte("# nothing\n"), 0o644)
	broken := filepath.Join(dir, "broken.pem")
	write(t, broken, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), 0o644)
	for _, tc := range []struct {
		name string
		o    tlsconf.ClientOptions
		want []string
	}{
		{"missing", tlsconf.ClientOptions{CAFile: filepath.Join(dir, "nope.pem")}, []string{"nope.pem does not exist", "expected PEM certificates"}},
		{"holds a private key", tlsconf.ClientOptions{CAFile: withKey}, []string{withKey, "holds a private key"}},
		{"no certificate", tlsconf.ClientOptions{CAFile: empty}, []string{empty, "no PEM certificate"}},
		{"certificate does not parse", tlsconf.ClientOptions{CAFile: broken}, []string{broken, "certificate 1"}},
		{"bad pin", tlsconf.ClientOptions{CAFile: a.CA, Pins: []string{"abc"}}, []string{"pin 1", "64 hex digits", "kanade tls pin"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tlsconf.Client(tc.o)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestParsePin(t *testing.T) {
	const hex = "6d2ea05e9e48576542af13b9c75aa00fbf6535bf665e6713145c7a2ac4c7764c"
	colons := ""
	for i := 0; i < len(hex); i += 2 {
		if i > 0 {
			colons += ":"
		}
		colons += strings.ToUpper(hex[i : i+2])
	}
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{hex, true},
		{strings.ToUpper(hex), true},
		{colons, true},
		{"  " + hex + "\n", true},
		{hex[:62], false},
		{hex + "00", false},
		{"zz" + hex[2:], false},
		{"", false},
		{"sha256/" + hex, false},
	} {
		p, err := tlsconf.ParsePin(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParsePin(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if tc.ok && strings.ToLower(strings.ReplaceAll(strings.TrimSpace(tc.in), ":", "")) != hexOf(p[:]) {
			t.Errorf("ParsePin(%q) = %x", tc.in, p)
		}
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&0xf])
	}
	return string(out)
}

// TestHandshake runs real TLS handshakes against a server serving a
// development certificate.
func TestHandshake(t *testing.T) {
	good, other := devCA(t), devCA(t)
	srvCfg, err := tlsconf.Server(good.Cert, good.Key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	certs, err := tlsconf.LoadCertificates(good.Cert)
	if err != nil {
		t.Fatal(err)
	}
	pin := tlsconf.Pin(certs[0])
	otherCerts, err := tlsconf.LoadCertificates(other.Cert)
	if err != nil {
		t.Fatal(err)
	}
	otherPin := tlsconf.Pin(otherCerts[0])

	for _, tc := range []struct {
		name string
		host string
		o    tlsconf.ClientOptions
		want func(error) bool // nil: success
	}{
		{"right CA", "127.0.0.1", tlsconf.ClientOptions{CAFile: good.CA}, nil},
		{"right CA by name", "localhost", tlsconf.ClientOptions{CAFile: good.CA}, nil},
		{"right CA and pin", "127.0.0.1", tlsconf.ClientOptions{CAFile: good.CA, Pins: []string{otherPin, pin}}, nil},
		{"wrong CA", "127.0.0.1", tlsconf.ClientOptions{CAFile: other.CA}, isUnknownAuthority},
		{"system roots", "127.0.0.1", tlsconf.ClientOptions{}, isUnknownAuthority},
		{"wrong CA, right pin", "127.0.0.1", tlsconf.ClientOptions{CAFile: other.CA, Pins: []string{pin}}, isUnknownAuthority},
		{"right CA, wrong pin", "127.0.0.1", tlsconf.ClientOptions{CAFile: good.CA, Pins: []string{otherPin}}, func(err error) bool {
			return strings.Contains(err.Error(), "not one of the 1 configured pins") && strings.Contains(err.Error(), pin)
		}},
		{"host not in the certificate", "127.0.0.2", tlsconf.ClientOptions{CAFile: good.CA}, func(err error) bool {
			var h x509.HostnameError
			return errors.As(err, &h)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tlsconf.Client(tc.o)
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			cfg.ServerName = tc.host // what nats.go and net/http set from the URL
			if tc.host == "127.0.0.2" {
				addr = net.JoinHostPort("127.0.0.1", port)
			}
			c, err := tls.Dial("tcp", addr, cfg)
			if err == nil {
				c.Close()
			}
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("handshake failed: %v", err)
			case tc.want != nil && err == nil:
				t.Fatal("handshake succeeded")
			case tc.want != nil && !tc.want(err):
				t.Fatalf("handshake failed with an unexpected error: %v", err)
			}
		})
	}
}

func isUnknownAuthority(err error) bool {
	var u x509.UnknownAuthorityError
	return errors.As(err, &u)
}

func TestPinMatchesTheKeyNotTheCertificate(t *testing.T) {
	p := devCA(t)
	certs, err := tlsconf.LoadCertificates(p.Cert)
	if err != nil {
		t.Fatal(err)
	}
	// A renewal with the same key: another certificate, the same pin.
	key := parseKey(t, read(t, p.Key))
	tmpl := *certs[0]
	tmpl.SerialNumber = big.NewInt(42)
	tmpl.NotAfter = tmpl.NotAfter.Add(time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	renewed, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if tlsconf.Pin(renewed) != tlsconf.Pin(certs[0]) {
		t.Error("a renewal with the same key changed the pin")
	}
	if len(tlsconf.Pin(renewed)) != 64 {
		t.Errorf("pin %q is not 64 hex digits", tlsconf.Pin(renewed))
	}
}

func parseKey(t *testing.T, b []byte) *ecdsa.PrivateKey {
	t.Helper()
	block, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*ecdsa.PrivateKey)
}
