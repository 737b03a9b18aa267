//go:build !windows

package agentconfig_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kanade-project/kanade/internal/agentconfig"
	"github.com/kanade-project/kanade/internal/natsauth"
	"github.com/kanade-project/kanade/internal/winetest"
)

func TestNKeySeed(t *testing.T) {
	seed, pub, err := natsauth.NewUser()
	if err != nil {
		t.Fatal(err)
	}
	dir := winetest.TempDir(t)
	file := func(name string, mode os.FileMode, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		keyFile string
		want    bool   // a seed is returned
		err     string // substring of the error
	}{
		{name: "no nkey_file: token or no auth", keyFile: ""},
		{name: "a root-only seed file", keyFile: file("ok.seed", 0o600, string(seed)+"\n"), want: true},
		{name: "readable by others", keyFile: file("open.seed", 0o640, string(seed)), err: "[agent] nkey_file: NKey seed file"},
		{name: "missing", keyFile: filepath.Join(dir, "missing.seed"), err: "does not exist"},
		{name: "not a seed", keyFile: file("junk.seed", 0o600, "hello"), err: "not an NKey user seed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			toml := "[agent]\nid = \"pc-a\"\nnats_urls = [\"nats://127.0.0.1:4222\"]\n"
			if tt.keyFile != "" {
				toml += "nkey_file = '" + tt.keyFile + "'\n"
			}
			cfg, err := agentconfig.Parse([]byte(toml))
			if err != nil {
				t.Fatal(err)
			}
			got, source, err := cfg.NKeySeed()
			switch {
			case tt.err != "":
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
			case err != nil:
				t.Fatal(err)
			case tt.want:
				if p, _ := natsauth.ParseSeed(got); p != pub || source != tt.keyFile {
					t.Fatalf("seed of %s from %q, want %s from %s", p, source, pub, tt.keyFile)
				}
			case got != nil:
				t.Fatalf("got a seed from %q, want none", source)
			}
		})
	}
}

func TestExampleMentionsTheNKeyFile(t *testing.T) {
	if !strings.Contains(agentconfig.Example(), "nkey_file") || !strings.Contains(agentconfig.Help(), "kanade agent enroll") {
		t.Error("the example config and help must say where the NKey seed goes")
	}
	// The commented example line parses once uncommented.
	ex := strings.Replace(agentconfig.Example(), "# nkey_file", "nkey_file", 1)
	if _, err := agentconfig.Parse([]byte(ex)); err != nil {
		t.Fatalf("example with nkey_file: %v", err)
	}
}
