package service

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite deploy/kanade-agent.service from the code")

// goldenUnit is the reference unit shipped in the repository.
var goldenUnit = filepath.Join("..", "..", "deploy", "kanade-agent.service")

// TestUnitFileMatchesDeployReference: deploy/kanade-agent.service is exactly
// what install writes for the default paths (/usr/local/bin/kanade-agent,
// /etc/kanade/agent.toml). Regenerate it with
// go test ./internal/service/ -run TestUnitFileMatchesDeployReference -update.
func TestUnitFileMatchesDeployReference(t *testing.T) {
	got, err := unitFile(DefaultLinuxBinary, "/etc/kanade/agent.toml")
	if err != nil {
		t.Fatal(err)
	}
	if *updateGolden {
		if err := os.WriteFile(goldenUnit, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenUnit)
	if err != nil {
		t.Fatal(err)
	}
	if got != strings.ReplaceAll(string(want), "\r\n", "\n") { // a CRLF checkout
		t.Fatalf("%s differs from the generated unit (run with -update to regenerate):\n--- generated\n%s\n--- file\n%s", goldenUnit, got, want)
	}
}

// directives returns the unit's non-comment lines.
func directives(unit string) []string {
	var out []string
	for _, l := range strings.Split(unit, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// TestUnitFileSettings checks the directives the agent depends on, and that
// those which would break it or its scripts are absent.
func TestUnitFileSettings(t *testing.T) {
	unit, err := unitFile("/opt/kanade/kanade-agent", "/etc/kanade/agent.toml")
	if err != nil {
		t.Fatal(err)
	}
	lines := directives(unit)
	has := func(l string) bool {
		for _, x := range lines {
			if x == l {
				return true
			}
		}
		return false
	}
	for _, want := range []string{
		"[Unit]", "[Service]", "[Install]",
		"ExecStart=/opt/kanade/kanade-agent --config /etc/kanade/agent.toml",
		"Restart=on-failure",
		"RestartSec=5",
		"EnvironmentFile=-/etc/kanade/agent.env",
		"User=root",
		"KillMode=mixed",
		"TimeoutStopSec=30",
		"WantedBy=multi-user.target",
	} {
		if !has(want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	for _, l := range lines {
		for _, bad := range []string{"RestartPreventExitStatus=", "NoNewPrivileges=", "ProtectSystem=", "ProtectHome=", "PrivateTmp=", "SuccessExitStatus="} {
			if strings.HasPrefix(l, bad) {
				t.Errorf("unit sets %q", l)
			}
		}
	}
	if !strings.Contains(unit, "chmod 600 /etc/kanade/agent.env") {
		t.Error("unit does not say to make agent.env root-only")
	}
}

// Paths with spaces, specifiers or dollars are quoted and escaped for
// systemd; relative paths and control characters are refused.
func TestUnitFileQuotesAndRejectsPaths(t *testing.T) {
	unit, err := unitFile("/opt/my kanade/kanade-agent", "/etc/kanade/100%$HOME.toml")
	if err != nil {
		t.Fatal(err)
	}
	if want := `ExecStart="/opt/my kanade/kanade-agent" --config /etc/kanade/100%%$$HOME.toml`; !strings.Contains(unit, "\n"+want+"\n") {
		t.Errorf("unit lacks %s:\n%s", want, unit)
	}
	for _, tc := range [][2]string{
		{"kanade-agent", "/etc/kanade/agent.toml"},
		{"/usr/local/bin/kanade-agent", "agent.toml"},
		{"/usr/local/bin/kanade-agent", "/etc/kanade/agent.toml\nExecStartPre=/bin/evil"},
	} {
		if _, err := unitFile(tc[0], tc[1]); err == nil {
			t.Errorf("unitFile(%q, %q) accepted", tc[0], tc[1])
		}
	}
}
