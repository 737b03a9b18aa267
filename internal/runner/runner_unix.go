//go:build !windows

package runner

import (
	"fmt"
	"os/exec"
	"runtime"
	"syscall"
)

// DefaultShell is the shell used when a Command names none.
func DefaultShell() string { return "sh" }

func buildCommand(shell, script, _ string) (*exec.Cmd, func(), error) {
	var path string
	switch shell {
	case "sh", "bash":
		p, err := exec.LookPath(shell)
		if err != nil {
			return nil, nil, fmt.Errorf("shell %q not found on this %s host: %w", shell, runtime.GOOS, err)
		}
		path = p
	case "powershell", "pwsh":
		p, err := exec.LookPath("pwsh")
		if err != nil {
			return nil, nil, fmt.Errorf("shell %q needs pwsh, which is not installed on this %s host", shell, runtime.GOOS)
		}
		return exec.Command(p, "-NoProfile", "-NonInteractive", "-Command", script), func() {}, nil
	case "cmd":
		return nil, nil, fmt.Errorf("shell \"cmd\" exists only on Windows; use sh or bash on %s", runtime.GOOS)
	default:
		return nil, nil, fmt.Errorf("unknown shell %q: expected one of powershell, pwsh, cmd, sh, bash (or empty for the platform default)", shell)
	}
	cmd := exec.Command(path, "-c", script)
	return cmd, func() {}, nil
}

type groupTree struct{ pgid int }

func startTree(cmd *exec.Cmd) (tree, error) {
	// A fresh process group lets one signal reach every descendant that did
	// not deliberately escape with setsid.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &groupTree{pgid: cmd.Process.Pid}, nil
}

// kill signals the whole group. ESRCH (already gone) is the common case
// at the end of a run; any other error leaves nothing more to try.
func (g *groupTree) kill() { _ = syscall.Kill(-g.pgid, syscall.SIGKILL) }

func (g *groupTree) close() {}

func exitCode(ee *exec.ExitError) int {
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ee.ExitCode()
}
