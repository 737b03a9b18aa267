package main_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestAgentStaysLean guards the endpoint daemon's weight: it must not link
// the NATS server, an SQL driver, HTML templates or the backend's packages
// (tailscaled's deps_test.go does the same for its daemon).
func TestAgentStaysLean(t *testing.T) {
	forbidden := []string{
		"github.com/nats-io/nats-server",
		"sqlite",
		"database/sql",
		"github.com/pressly/goose",
		"html/template",
		"github.com/spf13/cobra",
		"github.com/kanade-project/kanade/internal/server",
		"github.com/kanade-project/kanade/internal/broker",
		"github.com/kanade-project/kanade/internal/bootstrap",
		"github.com/kanade-project/kanade/internal/cli",
		"github.com/kanade-project/kanade/internal/api",
		"github.com/kanade-project/kanade/internal/store",
		"github.com/kanade-project/kanade/internal/projector",
		"github.com/kanade-project/kanade/internal/dashboard",
		"github.com/kanade-project/kanade/internal/scheduler",
		"github.com/kanade-project/kanade/internal/sim",
		"github.com/kanade-project/kanade/internal/bench",
	}
	for _, goos := range []string{"linux", "windows"} {
		t.Run(goos, func(t *testing.T) {
			cmd := exec.Command("go", "list", "-deps", ".")
			cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH=amd64")
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("go list: %v", err)
			}
			for _, dep := range strings.Fields(string(out)) {
				for _, f := range forbidden {
					if strings.Contains(dep, f) {
						t.Errorf("kanade-agent (%s) depends on %s", goos, dep)
					}
				}
			}
		})
	}
}
