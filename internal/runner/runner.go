package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"
)

// Spec describes one run.
type Spec struct {
	// Shell is a wire shell name; empty means the platform default.
	Shell  string
	Script string
	// Timeout bounds the run; zero means no timeout.
	Timeout time.Duration
	// Dir is the working directory; empty means the agent's own.
	Dir string
	// TempDir holds launcher files (PowerShell scripts); empty means
	// os.TempDir().
	TempDir string
	// OutputCap overrides OutputCap when positive (tests).
	OutputCap int
}

// Result is the outcome of a run that was started.
type Result struct {
	// ExitCode is the script's exit code, or -1 when it was killed or
	// timed out.
	ExitCode   int
	Stdout     string
	Stderr     string
	StdoutSize int64 // bytes written before capping
	StderrSize int64
	TimedOut   bool
	Killed     bool
	StartedAt  time.Time
	FinishedAt time.Time
}

// ErrSpawn wraps failures to start the shell (missing interpreter, bad
// working directory); the caller reports them as a spawn failure, not as
// the script's exit code.
var ErrSpawn = errors.New("spawn failed")

// waitDelay bounds how long Wait blocks on output pipes after the shell has
// exited or been killed; a grandchild that inherited stdout must not hold
// a result hostage.
const waitDelay = 2 * time.Second

// Run starts spec and waits for it. ctx cancellation kills the whole tree;
// the cancellation cause is reported in stderr.
func Run(ctx context.Context, spec Spec) (Result, error) {
	shell := spec.Shell
	if shell == "" {
		shell = DefaultShell()
	}
	// A missing working directory makes the spawn fail with the shell's
	// path in the error ("fork/exec /usr/bin/sh: no such file or
	// directory"), which blames the wrong thing; name the directory.
	if spec.Dir != "" {
		fi, err := os.Stat(spec.Dir)
		if err == nil && !fi.IsDir() {
			err = errors.New("not a directory")
		}
		if err != nil {
			return Result{}, fmt.Errorf("%w: working directory %q: %w", ErrSpawn, spec.Dir, err)
		}
	}
	tmp := spec.TempDir
	if tmp == "" {
		tmp = os.TempDir()
	}
	cmd, cleanup, err := buildCommand(shell, spec.Script, tmp)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrSpawn, err)
	}
	defer cleanup()
	limit := spec.OutputCap
	if limit <= 0 {
		limit = OutputCap
	}
	stdout, stderr := newCapture(limit), newCapture(limit)
	cmd.Stdin = nil // the null device: a script waiting on input must not hang
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.Dir = spec.Dir
	cmd.WaitDelay = waitDelay

	res := Result{StartedAt: time.Now().UTC()}
	t, err := startTree(cmd)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %s: %w", ErrSpawn, shell, err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()

	var timeout <-chan time.Time
	if spec.Timeout > 0 {
		tm := time.NewTimer(spec.Timeout)
		defer tm.Stop()
		timeout = tm.C
	}
	var reason string
	var werr error
	select {
	case werr = <-waitErr:
	case <-timeout:
		res.TimedOut = true
		reason = fmt.Sprintf("timed out after %s", spec.Timeout)
		t.kill()
		werr = <-waitErr
	case <-ctx.Done():
		res.Killed = true
		reason = "killed"
		if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
			reason = "killed: " + c.Error()
		}
		t.kill()
		werr = <-waitErr
	}
	// The run is over: whatever the script left running in its tree goes
	// with it, so a run never leaks processes onto the endpoint.
	t.kill()
	t.close()
	res.FinishedAt = time.Now().UTC()
	res.Stdout, res.StdoutSize = stdout.String(), stdout.Total()
	res.Stderr, res.StderrSize = stderr.String(), stderr.Total()

	switch {
	case reason != "":
		res.ExitCode = -1
		res.Stderr = appendLine(res.Stderr, "[kanade] "+reason)
	default:
		var ee *exec.ExitError
		switch {
		case werr == nil:
			res.ExitCode = 0
		case errors.As(werr, &ee):
			res.ExitCode = exitCode(ee)
		case errors.Is(werr, exec.ErrWaitDelay):
			// The shell exited; only the pipes lingered.
			res.ExitCode = 0
			if !cmd.ProcessState.Success() {
				res.ExitCode = exitCode(&exec.ExitError{ProcessState: cmd.ProcessState})
			}
		default:
			res.ExitCode = -1
			res.Stderr = appendLine(res.Stderr, "[kanade] wait failed: "+werr.Error())
		}
	}
	return res, nil
}

func appendLine(s, line string) string {
	if s != "" && s[len(s)-1] != '\n' {
		s += "\n"
	}
	return s + line + "\n"
}

// tree is the platform's handle on the process tree of one run.
type tree interface {
	kill()
	close()
}
