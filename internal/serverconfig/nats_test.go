package serverconfig

import (
	"slices"
	"strings"
	"testing"
)

func TestNATSTable(t *testing.T) {
	for _, tc := range []struct {
		name     string
		toml     string
		embedded bool
		urls     []string
		replicas int
		err      []string // substrings of the error; nil: no error
	}{
		{name: "no table: embedded, replicas kept", toml: ``, embedded: true, replicas: 0},
		{name: "embedded, replicas 1 said", toml: "[nats]\nreplicas = 1", embedded: true, replicas: 1},
		{name: "urls imply external", toml: "[nats]\nurls = [\"nats://a:4222\"]", urls: []string{"nats://a:4222"}, replicas: 0},
		{name: "a three-node cluster", toml: "[nats]\nembedded = false\nurls = [\"nats://a:4222\", \"nats://b:4222\", \"nats://c:4222\"]\nreplicas = 3",
			urls: []string{"nats://a:4222", "nats://b:4222", "nats://c:4222"}, replicas: 3},
		{name: "five replicas", toml: "[nats]\nurls = [\"nats://a:4222\"]\nreplicas = 5", urls: []string{"nats://a:4222"}, replicas: 5},

		{name: "two replicas", toml: "[nats]\nurls = [\"nats://a:4222\"]\nreplicas = 2", err: []string{"[nats] replicas = 2", "expected 1, 3 or 5"}},
		{name: "four replicas", toml: "[nats]\nurls = [\"nats://a:4222\"]\nreplicas = 4", err: []string{"[nats] replicas = 4", "expected 1, 3 or 5"}},
		{name: "negative", toml: "[nats]\nurls = [\"nats://a:4222\"]\nreplicas = -1", err: []string{"[nats] replicas = -1"}},
		{name: "seven", toml: "[nats]\nurls = [\"nats://a:4222\"]\nreplicas = 7", err: []string{"[nats] replicas = 7"}},
		{name: "replicas with the embedded broker", toml: "[nats]\nreplicas = 3", err: []string{"[nats] replicas = 3 needs a NATS cluster", "embedded = false", "urls"}},
		{name: "embedded and urls", toml: "[nats]\nembedded = true\nurls = [\"nats://a:4222\"]", err: []string{"embedded = true and urls"}},
		{name: "external without urls", toml: "[nats]\nembedded = false", err: []string{"embedded = false needs urls"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.toml))
			if tc.err != nil {
				if err == nil {
					t.Fatalf("parsed %+v, want an error", c.NATS)
				}
				for _, want := range tc.err {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Embedded() != tc.embedded || !slices.Equal(c.NATS.URLs, tc.urls) || c.NATS.Replicas != tc.replicas {
				t.Errorf("embedded %v urls %v replicas %d, want %v %v %d", c.Embedded(), c.NATS.URLs, c.NATS.Replicas, tc.embedded, tc.urls, tc.replicas)
			}
		})
	}
	if r := Default().NATS.Replicas; r != 0 {
		t.Errorf("Default() replicas = %d, want 0 (keep what exists)", r)
	}
}

func TestNATSAuth(t *testing.T) {
	for _, tc := range []struct {
		toml  string
		nkeys bool
		err   string
	}{
		{toml: ``},
		{toml: "[nats]\nauth = \"token\""},
		{toml: "[nats]\nauth = \"nkeys\"", nkeys: true},
		{toml: "[nats]\nauth = \"nkeys\"\nurls = [\"nats://a:4222\"]", nkeys: true},
		{toml: "[nats]\nauth = \"NKeys\"", err: `[nats] auth = "NKeys": expected "token"`},
		{toml: "[nats]\nauth = \"jwt\"", err: `expected "token" (one shared token, every client has every right) or "nkeys"`},
	} {
		t.Run(tc.toml, func(t *testing.T) {
			c, err := Parse([]byte(tc.toml))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.NKeys() != tc.nkeys {
				t.Errorf("NKeys() = %v, want %v", c.NKeys(), tc.nkeys)
			}
		})
	}
	if Default().NKeys() {
		t.Error("the default is token auth: the quick start needs no keys")
	}
}
