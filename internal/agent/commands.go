package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/kanade-project/kanade/internal/runner"
	"github.com/kanade-project/kanade/internal/wire"
)

// onCommand is the subscription handler: it decodes and hands the work to a
// goroutine so that the subscription never blocks on a running script.
func (a *Agent) onCommand(m *nats.Msg) {
	cmd, err := decodeCommand(m.Data)
	if err != nil {
		a.log.Error("rejected command", "subject", m.Subject, "err", err, "bytes", len(m.Data))
		if rid := recoverRequestID(m.Data); rid != "" {
			a.runs.Add(1)
			go func() {
				defer a.runs.Done()
				a.publishResult(a.invalidResult(rid, recoverString(m.Data, "exec_id", "job_id"), err))
			}()
		}
		return
	}
	a.runs.Add(1)
	go func() {
		defer a.runs.Done()
		a.execute(cmd)
	}()
}

// decodeCommand parses and validates a Command. Every field that ends up
// in a subject or a file name is checked here.
func decodeCommand(b []byte) (wire.Command, error) {
	var c wire.Command
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("not a Command JSON object: %w", err)
	}
	if err := wire.CheckToken("request_id", c.RequestID); err != nil {
		return c, err
	}
	if c.ExecID == "" {
		c.ExecID = c.RequestID
	}
	if err := wire.CheckToken("exec_id", c.ExecID); err != nil {
		return c, err
	}
	if strings.TrimSpace(c.Script) == "" {
		return c, errors.New("script is empty: nothing to run")
	}
	switch c.Shell {
	case "", wire.ShellPowerShell, wire.ShellPwsh, wire.ShellCmd, wire.ShellSh, wire.ShellBash:
	default:
		return c, fmt.Errorf("unknown shell %q: expected powershell, pwsh, cmd, sh, bash or empty for the platform default", c.Shell)
	}
	if c.TimeoutSecs < 0 || c.JitterSecs < 0 {
		return c, errors.New("timeout_secs and jitter_secs must not be negative")
	}
	if c.ID == "" {
		c.ID = wire.AdhocJobID
	}
	return c, nil
}

// recoverRequestID digs a usable request_id out of a payload that failed
// validation, so the sender still gets an answer.
func recoverRequestID(b []byte) string {
	rid := recoverString(b, "request_id")
	if !wire.ValidToken(rid) {
		return ""
	}
	return rid
}

func recoverString(b []byte, keys ...string) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return ""
	}
	for _, k := range keys {
		var s string
		if json.Unmarshal(m[k], &s) == nil && s != "" {
			return s
		}
	}
	return ""
}

func (a *Agent) invalidResult(requestID, execID string, cause error) wire.ExecResult {
	if !wire.ValidToken(execID) {
		execID = requestID
	}
	now := time.Now().UTC()
	return wire.ExecResult{
		ResultID:   nuid.Next(),
		RequestID:  requestID,
		ExecID:     execID,
		PCID:       a.cfg.ID,
		ExitCode:   wire.ExitInvalidCommand,
		Skipped:    true,
		Stderr:     "[kanade] command rejected: " + cause.Error() + "\n",
		FinishedAt: now,
	}
}

// execute runs one admitted command and publishes its result.
func (a *Agent) execute(c wire.Command) {
	log := a.log.With("request_id", c.RequestID, "exec_id", c.ExecID, "job", c.ID)
	res := wire.ExecResult{
		ResultID:  nuid.Next(),
		RequestID: c.RequestID,
		ExecID:    c.ExecID,
		JobID:     c.ID,
		Version:   c.Version,
		PCID:      a.cfg.ID,
	}
	ctx := a.runCtx
	if c.JitterSecs > 0 {
		d := rand.N(time.Duration(c.JitterSecs) * time.Second)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			res.ExitCode = wire.ExitKilled
			res.Stderr = "[kanade] killed during jitter wait: " + context.Cause(ctx).Error() + "\n"
			res.FinishedAt = time.Now().UTC()
			a.publishResult(res)
			return
		}
	}
	spec := runner.Spec{
		Shell:   c.Shell,
		Script:  c.Script,
		Timeout: time.Duration(c.TimeoutSecs) * time.Second,
		Dir:     c.Cwd,
	}
	log.Info("running command", "shell", spec.Shell, "timeout", spec.Timeout)
	out, err := a.cfg.Exec(ctx, spec)
	if err != nil {
		now := time.Now().UTC()
		res.ExitCode = wire.ExitSpawnFailed
		res.Skipped = true
		res.Stderr = "[kanade] " + err.Error() + "\n"
		res.StartedAt, res.FinishedAt = now, now
		log.Warn("command could not start", "err", err)
		a.publishResult(res)
		return
	}
	res.ExitCode = out.ExitCode
	res.Stdout, res.Stderr = out.Stdout, out.Stderr
	res.StartedAt, res.FinishedAt = out.StartedAt, out.FinishedAt
	log.Info("command finished", "exit_code", out.ExitCode, "duration", out.FinishedAt.Sub(out.StartedAt), "timed_out", out.TimedOut)
	a.publishResult(res)
}
