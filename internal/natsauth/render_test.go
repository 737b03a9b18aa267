package natsauth_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/kanade-project/kanade/internal/broker"
	"github.com/kanade-project/kanade/internal/natsauth"
)

var update = flag.Bool("update", false, "rewrite docs/nats-roles.conf")

// exampleKey is a fixed, valid public user key (from a seed of n repeated),
// so the committed example never changes by itself.
func exampleKey(t *testing.T, n byte) string {
	t.Helper()
	kp, err := nkeys.CreatePairWithRand(nkeys.PrefixByteUser, bytes.NewReader(bytes.Repeat([]byte{n}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// loadConfig parses text with nats-server's own parser.
func loadConfig(t *testing.T, text string) *server.Options {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth.conf")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server refuses the rendered configuration: %v\n%s", err, text)
	}
	return opts
}

// TestRenderedConfigIsWhatTheBrokerEnforces: the configuration rendered for
// an external cluster, read back by nats-server's parser, gives every user
// exactly the permissions the embedded broker gives it — including pc_ids
// with characters the config language must escape.
func TestRenderedConfigIsWhatTheBrokerEnforces(t *testing.T) {
	users := []natsauth.User{
		{Role: natsauth.RoleBackend, PublicKey: exampleKey(t, 1)},
		{Role: natsauth.RoleOperator, PublicKey: exampleKey(t, 2)},
		{Role: natsauth.RoleAgent, PC: "PC-042", PublicKey: exampleKey(t, 3)},
		{Role: natsauth.RoleAgent, PC: `odd"pc\name$x#1`, PublicKey: exampleKey(t, 4)},
		{Role: natsauth.RoleAgent, PC: "PC-東京", PublicKey: exampleKey(t, 5)},
	}
	text, err := natsauth.RenderConfig(users)
	if err != nil {
		t.Fatal(err)
	}
	opts := loadConfig(t, text)
	if len(opts.Nkeys) != len(users) {
		t.Fatalf("parsed %d users, want %d", len(opts.Nkeys), len(users))
	}
	for i, u := range users {
		got := opts.Nkeys[i]
		if got.Nkey != u.PublicKey {
			t.Errorf("user %d: nkey %s, want %s", i, got.Nkey, u.PublicKey)
			continue
		}
		want := broker.ServerPermissions(u.Permissions())
		if !reflect.DeepEqual(got.Permissions.Publish, want.Publish) || !reflect.DeepEqual(got.Permissions.Subscribe, want.Subscribe) {
			t.Errorf("%s: parsed publish %+v subscribe %+v, want %+v %+v", u.Name(), got.Permissions.Publish, got.Permissions.Subscribe, want.Publish, want.Subscribe)
		}
		if (got.Permissions.Response != nil) != (want.Response != nil) {
			t.Errorf("%s: allow_responses %v, want %v", u.Name(), got.Permissions.Response != nil, want.Response != nil)
		}
	}
}

// TestDocumentedConfig keeps docs/nats-roles.conf what RenderConfig
// produces for example keys, and loadable by nats-server. Regenerate it
// with go test ./internal/natsauth -run TestDocumentedConfig -update.
func TestDocumentedConfig(t *testing.T) {
	text, err := natsauth.RenderConfig([]natsauth.User{
		{Role: natsauth.RoleBackend, PublicKey: exampleKey(t, 1)},
		{Role: natsauth.RoleOperator, PublicKey: exampleKey(t, 2)},
		{Role: natsauth.RoleAgent, PC: "PC-042", PublicKey: exampleKey(t, 3)},
	})
	if err != nil {
		t.Fatal(err)
	}
	doc := `# An example of the NATS roles for an external cluster, with example keys.
# The real block, with your server's keys and every enrolled agent, comes
# from "kanade nats config" (README: "NATS roles and agent enrolment").
# Include it from each node's nats-server.conf:
#   include ./kanade-auth.conf
# This file is generated (go test ./internal/natsauth -run TestDocumentedConfig -update).

` + text
	path := filepath.Join("..", "..", "docs", "nats-roles.conf")
	if *update {
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != doc {
		t.Fatalf("%s is out of date with the role table: run go test ./internal/natsauth -run TestDocumentedConfig -update", path)
	}
	loadConfig(t, string(got))
	if !strings.Contains(doc, `"_INBOX.PC-042.>"`) {
		t.Error("the example lacks the agent's own inbox")
	}
}
