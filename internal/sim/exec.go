package sim

import (
	"context"
	"fmt"
	"time"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/runner"
)

// ExecMode selects what a simulated agent does with a command it admitted.
type ExecMode string

// The executors. Noop and Echo run in-process and never spawn: with
// thousands of agents on one machine, process creation would be all a
// benchmark measured.
const (
	// ExecNoop answers exit 0 with no output at once.
	ExecNoop ExecMode = "noop"
	// ExecEcho answers exit 0 with the script's text as stdout.
	ExecEcho ExecMode = "echo"
	// ExecReal runs the script with runner.Run, as a real agent does.
	ExecReal ExecMode = "real"
)

// ParseExecMode accepts noop, echo or real (empty is noop).
func ParseExecMode(s string) (ExecMode, error) {
	switch m := ExecMode(s); m {
	case "":
		return ExecNoop, nil
	case ExecNoop, ExecEcho, ExecReal:
		return m, nil
	}
	return "", fmt.Errorf("unknown executor %q: expected noop, echo or real", s)
}

// Executor returns the agent.Executor of a mode.
func (m ExecMode) Executor() (agent.Executor, error) {
	switch m {
	case "", ExecNoop:
		return noop, nil
	case ExecEcho:
		return echo, nil
	case ExecReal:
		return runner.Run, nil
	}
	return nil, fmt.Errorf("unknown executor %q: expected noop, echo or real", m)
}

func noop(ctx context.Context, _ runner.Spec) (runner.Result, error) {
	now := time.Now().UTC()
	if ctx.Err() != nil {
		return runner.Result{ExitCode: -1, Killed: true, StartedAt: now, FinishedAt: now}, nil
	}
	return runner.Result{StartedAt: now, FinishedAt: now}, nil
}

func echo(ctx context.Context, spec runner.Spec) (runner.Result, error) {
	r, err := noop(ctx, spec)
	if r.ExitCode == 0 {
		r.Stdout = spec.Script + "\n"
		r.StdoutSize = int64(len(r.Stdout))
	}
	return r, err
}
