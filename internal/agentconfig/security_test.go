package agentconfig

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/kanade-project/kanade/internal/signing"
	"github.com/kanade-project/kanade/internal/winetest"
)

func parseSecurity(t *testing.T, security string) *Config {
	t.Helper()
	c, err := Parse([]byte("[agent]\nnats_urls = [\"nats://x:4222\"]\n[security]\n" + security))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pubLine(t *testing.T) (string, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return signing.PublicLine(signing.PurposeCommand, pub), signing.KeyID(pub)
}

func TestCommandSigningSettings(t *testing.T) {
	if _, ok, _ := platformCommandKeys(); ok {
		t.Skip("this host has registry command keys, which take precedence")
	}
	for _, tc := range []struct {
		name     string
		security string
		require  bool
		file     string
	}{
		{"nothing set", "", false, ""},
		{"switch alone", "require_signed_commands = true", true, ""},
		{"ring alone", `command_keys_file = "/etc/kanade/command-keys.pub"`, false, "/etc/kanade/command-keys.pub"},
		{"both", "command_keys_file = \"/etc/kanade/command-keys.pub\"\nrequire_signed_commands = true", true, "/etc/kanade/command-keys.pub"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require, keys, err := parseSecurity(t, tc.security).CommandSigning()
			if err != nil {
				t.Fatal(err)
			}
			file := ""
			if keys != nil {
				file = keys.String()
			}
			if require != tc.require || file != tc.file {
				t.Fatalf("CommandSigning = %v, %q; want %v, %q", require, file, tc.require, tc.file)
			}
		})
	}
	if _, err := Parse([]byte("[agent]\nnats_urls = [\"nats://x:4222\"]\n[security]\nrequire_signed_commands = \"yes\"\n")); err == nil {
		t.Error("a string switch was accepted")
	}
	ex, err := Parse([]byte(Example()))
	if err != nil {
		t.Fatalf("the example does not parse: %v", err)
	}
	if require, keys, _ := ex.CommandSigning(); require || keys == nil {
		t.Errorf("the example should name a ring and leave enforcement off: %v %v", require, keys)
	}
}

func TestCommandKeysLoad(t *testing.T) {
	line, id := pubLine(t)
	dir := winetest.TempDir(t)
	for _, tc := range []struct {
		name    string
		content string
		mode    os.FileMode
		owner   int // -1: leave as created
		want    string
		ids     int
	}{
		{name: "one key", content: "# operators\n" + line, mode: 0o644, owner: -1, ids: 1},
		{name: "empty ring", content: "# none yet\n", mode: 0o600, owner: -1},
		{name: "malformed", content: line + "kanade-command-key ed25519 nope\n", mode: 0o644, owner: -1, want: "line 2: malformed public key"},
		{name: "a release key", content: strings.Replace(line, "command", "release", 1), mode: 0o644, owner: -1, want: "line 1"},
		{name: "group writable", content: line, mode: 0o664, owner: -1, want: "writable by group or others (mode -rw-rw-r--): run chmod go-w"},
		{name: "world writable", content: line, mode: 0o646, owner: -1, want: "chmod go-w"},
		{name: "owned by someone else", content: line, mode: 0o644, owner: 12345, want: "owned by uid 12345, not by root"},
		{name: "missing", owner: -1, want: "does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".pub")
			if tc.content != "" {
				if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tc.mode); err != nil {
					t.Fatal(err)
				}
			}
			if tc.owner >= 0 {
				if runtime.GOOS == "windows" || os.Geteuid() != 0 {
					t.Skip("changing a file's owner needs root")
				}
				if err := os.Chown(path, tc.owner, -1); err != nil {
					t.Fatal(err)
				}
			}
			if runtime.GOOS == "windows" && strings.Contains(tc.want, "chmod") {
				t.Skip("no mode bits on Windows")
			}
			k := &CommandKeys{path: path}
			r, err := k.Load()
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
					t.Fatalf("Load = %v, want an error naming %s with %q", err, path, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Len() != tc.ids || (tc.ids == 1 && r.IDs()[0] != id) {
				t.Fatalf("ring %v, want %d key(s)", r.IDs(), tc.ids)
			}
		})
	}
}

func TestCommandKeysStampChangesWithTheFile(t *testing.T) {
	path := filepath.Join(winetest.TempDir(t), "ring.pub")
	k := &CommandKeys{path: path}
	if _, err := k.Stamp(); err == nil {
		t.Fatal("a missing file has a stamp")
	}
	stamps := map[string]bool{}
	for i := range 3 {
		// Same size and written within the same clock tick: only the
		// file's identity tells them apart.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(fmt.Sprintf("# ring %d\n", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		s, err := k.Stamp()
		if err != nil {
			t.Fatal(err)
		}
		again, _ := k.Stamp()
		if s != again {
			t.Fatalf("an unchanged file's stamp changed: %q, %q", s, again)
		}
		stamps[s] = true
	}
	if len(stamps) != 3 && runtime.GOOS != "windows" {
		t.Fatalf("three replacements gave %d distinct stamps", len(stamps))
	}
	if err := os.Chmod(path, 0o664); err != nil {
		t.Fatal(err)
	}
	if s, _ := k.Stamp(); stamps[s] && runtime.GOOS != "windows" {
		t.Fatal("a mode change left the stamp alone: a ring made writable would not be re-checked")
	}
}
