package agentconfig_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/kanade-project/kanade/internal/agentconfig"
	"github.com/kanade-project/kanade/internal/devca"
	"github.com/kanade-project/kanade/internal/winetest"
)

func TestNATSTLS(t *testing.T) {
	p, err := devca.Generate(winetest.TempDir(t), []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(winetest.TempDir(t), "ca.pem")
	b, err := os.ReadFile(p.CA)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(loose, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o664); err != nil {
		t.Fatal(err)
	}
	const pin = "6d2ea05e9e48576542af13b9c75aa00fbf6535bf665e6713145c7a2ac4c7764c"
	for _, tc := range []struct {
		name     string
		extra    string
		parseErr string
		loadErr  string
		unixOnly bool
		enabled  bool
		pinned   bool
	}{
		{name: "plaintext", extra: ""},
		{name: "CA", extra: fmt.Sprintf("nats_ca_file = '%s'", p.CA), enabled: true},
		{name: "CA and pins", extra: fmt.Sprintf("nats_ca_file = '%s'\nnats_pin_sha256 = [%q]", p.CA, pin), enabled: true, pinned: true},
		{name: "pins on the system roots", extra: fmt.Sprintf("nats_pin_sha256 = [%q]", pin), enabled: true, pinned: true},
		{name: "short pin", extra: `nats_pin_sha256 = ["abcd"]`, parseErr: "[agent] nats_pin_sha256 entry 1"},
		{name: "second pin bad", extra: fmt.Sprintf("nats_pin_sha256 = [%q, \"sha256:%s\"]", pin, pin), parseErr: "[agent] nats_pin_sha256 entry 2"},
		{name: "pins not a list", extra: fmt.Sprintf("nats_pin_sha256 = %q", pin), parseErr: "line 4"},
		{name: "missing CA", extra: "nats_ca_file = '/nonexistent/ca.pem'", loadErr: "[agent] nats_ca_file: /nonexistent/ca.pem does not exist"},
		{name: "CA writable by the group", extra: fmt.Sprintf("nats_ca_file = '%s'", loose), loadErr: "chmod go-w", unixOnly: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.unixOnly && runtime.GOOS == "windows" {
				t.Skip("mode bits say nothing on Windows")
			}
			c, err := agentconfig.Parse([]byte("[agent]\nid = \"pc\"\nnats_urls = [\"nats://x:4222\"]\n" + tc.extra + "\n"))
			if tc.parseErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.parseErr) {
					t.Fatalf("Parse: %v, want an error with %q", err, tc.parseErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := c.NATSTLS()
			if tc.loadErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.loadErr) {
					t.Fatalf("NATSTLS: %v, want an error with %q", err, tc.loadErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (cfg != nil) != tc.enabled {
				t.Fatalf("NATSTLS = %v, want enabled %v", cfg, tc.enabled)
			}
			if cfg != nil && (cfg.VerifyConnection != nil) != tc.pinned {
				t.Errorf("pinned = %v, want %v", cfg.VerifyConnection != nil, tc.pinned)
			}
			if cfg != nil && cfg.InsecureSkipVerify {
				t.Error("InsecureSkipVerify is set")
			}
		})
	}
}
