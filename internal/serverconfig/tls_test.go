package serverconfig_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kanade-project/kanade/internal/devca"
	"github.com/kanade-project/kanade/internal/serverconfig"
)

func TestTLSOptions(t *testing.T) {
	a, err := devca.Generate(t.TempDir(), []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := devca.Generate(t.TempDir(), []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	q := func(s string) string { return "'" + s + "'" }
	for _, tc := range []struct {
		name string
		toml string
		// parseErr and loadErr are substrings of Parse's and LoadTLS's
		// error; nil: no error.
		parseErr, loadErr []string
		broker, http, ca  bool
	}{
		{name: "none", toml: ""},
		{name: "broker and API", toml: fmt.Sprintf("[nats]\ntls_cert_file = %s\ntls_key_file = %s\nca_file = %s\n[http]\ntls_cert_file = %[1]s\ntls_key_file = %[2]s\n", q(a.Cert), q(a.Key), q(a.CA)),
			broker: true, http: true, ca: true},
		{name: "API only", toml: fmt.Sprintf("[http]\ntls_cert_file = %s\ntls_key_file = %s\n", q(a.Cert), q(a.Key)), http: true},
		{name: "external broker with a CA", toml: fmt.Sprintf("[nats]\nurls = [\"tls://nats.example:4222\"]\nca_file = %s\n", q(a.CA)), ca: true},

		{name: "certificate without key", toml: fmt.Sprintf("[nats]\ntls_cert_file = %s\n", q(a.Cert)), parseErr: []string{"[nats] tls_cert_file and tls_key_file go together"}},
		{name: "API key without certificate", toml: fmt.Sprintf("[http]\ntls_key_file = %s\n", q(a.Key)), parseErr: []string{"[http] tls_cert_file and tls_key_file go together"}},
		{name: "certificate for an external broker", toml: fmt.Sprintf("[nats]\nurls = [\"nats://x:4222\"]\ntls_cert_file = %s\ntls_key_file = %s\n", q(a.Cert), q(a.Key)),
			parseErr: []string{"[nats] tls_cert_file is for the embedded broker", "ca_file"}},
		{name: "CA for a plaintext embedded broker", toml: fmt.Sprintf("[nats]\nca_file = %s\n", q(a.CA)), parseErr: []string{"[nats] ca_file", "serves no TLS"}},
		{name: "missing certificate", toml: fmt.Sprintf("[nats]\ntls_cert_file = %s\ntls_key_file = %s\n", q(missing), q(a.Key)),
			loadErr: []string{"[nats] tls_cert_file / tls_key_file", missing, "does not exist", "PEM"}},
		{name: "key of another certificate", toml: fmt.Sprintf("[http]\ntls_cert_file = %s\ntls_key_file = %s\n", q(a.Cert), q(b.Key)),
			loadErr: []string{"[http] tls_cert_file / tls_key_file", a.Cert, b.Key, "do not belong together"}},
		{name: "missing CA", toml: fmt.Sprintf("[nats]\nurls = [\"tls://nats.example:4222\"]\nca_file = %s\n", q(missing)),
			loadErr: []string{"[nats] ca_file", missing, "does not exist"}},
		{name: "CA file is the key", toml: fmt.Sprintf("[nats]\nurls = [\"tls://nats.example:4222\"]\nca_file = %s\n", q(a.CAKey)),
			loadErr: []string{"[nats] ca_file", a.CAKey, "private key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := serverconfig.Parse([]byte(tc.toml))
			if !matches(t, "Parse", err, tc.parseErr) || err != nil {
				return
			}
			got, err := c.LoadTLS()
			if !matches(t, "LoadTLS", err, tc.loadErr) || err != nil {
				return
			}
			if (got.Broker != nil) != tc.broker || (got.HTTP != nil) != tc.http || (got.Client != nil) != tc.ca {
				t.Errorf("LoadTLS: broker %v, http %v, client %v; want %v %v %v", got.Broker != nil, got.HTTP != nil, got.Client != nil, tc.broker, tc.http, tc.ca)
			}
		})
	}
}

// matches reports whether err is as wanted (nil want: no error), failing
// the test when it is not.
func matches(t *testing.T, what string, err error, want []string) bool {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Errorf("%s: %v", what, err)
		return false
	case want != nil && err == nil:
		t.Errorf("%s accepted it", what)
		return false
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s error %q lacks %q", what, err, w)
		}
	}
	return true
}
