package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/wire"
)

type runFlags struct {
	all        bool
	group      string
	shell      string
	timeout    time.Duration
	jitter     time.Duration
	wait       time.Duration
	survey     time.Duration
	output     string
	scriptFile string
}

func (a *app) runCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run (<pc> | --all | --group G) [flags] -- <script>",
		Short: "Run a script on one PC, a group, or every PC",
		Long: `Run a script and show what it printed.

One PC: prints the script's stdout and stderr and exits with its exit code
(3 when no result arrived within --wait; the command stays stored and runs
when the PC comes back).

A group or everyone (--group, --all): shows each PC's result as it arrives,
then a summary of who answered and who did not within --wait. "Did not
answer" lists the agents that answered a survey at the start but sent no
result; agents that are offline are not known without the backend.

The script is everything after --, or the content of --file (- for stdin).
An empty --shell means the PC's default: powershell on Windows, sh elsewhere.

With --command-key FILE (or KANADE_COMMAND_KEY) the command is signed for
exactly this target and expires in 7 days; endpoints that require signed
commands refuse anything else with exit 123 (see kanade command-key --help).`,
		Example: `  kanade run pc-042 -- echo hi
  kanade run --all --timeout 2m -- hostname
  kanade run --group canary --shell cmd -- ver
  kanade run pc-042 --file fix.ps1 --shell powershell
  kanade --command-key ~/.kanade/keys/command.key run pc-042 -- whoami`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd, args, f)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.all, "all", false, "run on every PC")
	fl.StringVar(&f.group, "group", "", "run on every PC of this group")
	fl.StringVar(&f.shell, "shell", "", "powershell | pwsh | cmd | sh | bash (default: the PC's platform default)")
	fl.DurationVar(&f.timeout, "timeout", 0, "kill the script after this long (0: no limit)")
	fl.DurationVar(&f.jitter, "jitter", 0, "each PC waits a random delay up to this before starting")
	fl.DurationVar(&f.wait, "wait", 2*time.Minute, "how long to wait for results")
	fl.DurationVar(&f.survey, "survey", time.Second, "broadcasts: how long to collect the list of online agents")
	fl.StringVarP(&f.output, "output", "o", "text", "text | json")
	fl.StringVarP(&f.scriptFile, "file", "f", "", "read the script from this file (- for stdin)")
	return cmd
}

func (a *app) run(cmd *cobra.Command, args []string, f runFlags) error {
	dash := cmd.ArgsLenAtDash()
	var positional, scriptArgs []string
	if dash >= 0 {
		positional, scriptArgs = args[:dash], args[dash:]
	} else {
		positional = args
	}
	target := fleetclient.Target{All: f.all, Group: f.group}
	switch len(positional) {
	case 0:
	case 1:
		target.PC = positional[0]
	default:
		return &exitError{exitUsage, fmt.Sprintf("expected at most one PC before --, got %q (put the script after --)", positional)}
	}
	if _, err := target.Subject(); err != nil {
		return &exitError{exitUsage, err.Error() + " (kanade run <pc> -- <script>, or --all, or --group G)"}
	}
	if f.output != "text" && f.output != "json" {
		return &exitError{exitUsage, fmt.Sprintf("--output %q: expected text or json", f.output)}
	}
	script, err := a.readScript(f.scriptFile, scriptArgs)
	if err != nil {
		return &exitError{exitUsage, err.Error()}
	}
	switch f.shell {
	case "", wire.ShellPowerShell, wire.ShellPwsh, wire.ShellCmd, wire.ShellSh, wire.ShellBash:
	default:
		return &exitError{exitUsage, fmt.Sprintf("--shell %q: expected powershell, pwsh, cmd, sh or bash", f.shell)}
	}
	signer, err := a.commandSigner()
	if err != nil {
		return err
	}
	c, closeConn, err := a.connect(cmd.Context())
	if err != nil {
		return err
	}
	defer closeConn()
	c.Signer = signer

	command := wire.Command{
		ID:          wire.AdhocJobID,
		Shell:       f.shell,
		Script:      script,
		TimeoutSecs: int((f.timeout + time.Second - 1) / time.Second),
		JitterSecs:  int(f.jitter / time.Second),
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), f.wait)
	defer cancel()

	var surveyed chan []wire.Heartbeat
	if target.PC == "" {
		surveyed = make(chan []wire.Heartbeat, 1)
		go func() {
			hbs, _ := c.Survey(ctx, f.survey)
			surveyed <- hbs
		}()
	}
	ex, err := c.Start(ctx, target, command)
	if err != nil {
		return err
	}
	defer ex.Close()
	if target.PC != "" {
		return a.runOne(ctx, c, ex, target.PC, f)
	}
	return a.runMany(ctx, c, ex, surveyed, f)
}

func (a *app) readScript(file string, args []string) (string, error) {
	if file != "" && len(args) > 0 {
		return "", fmt.Errorf("give the script either after -- or with --file, not both")
	}
	var s string
	switch {
	case file == "-":
		b, err := io.ReadAll(a.in)
		if err != nil {
			return "", err
		}
		s = string(b)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		s = string(b)
	default:
		s = strings.Join(args, " ")
	}
	if strings.TrimSpace(s) == "" {
		return "", fmt.Errorf("no script: put it after -- (kanade run pc-1 -- echo hi) or use --file")
	}
	return s, nil
}

func (a *app) runOne(ctx context.Context, c *fleetclient.Client, ex *fleetclient.Execution, pc string, f runFlags) error {
	select {
	case <-ctx.Done():
		return &exitError{exitNoAnswer, fmt.Sprintf("no result from %s within %s (request_id %s); the command is stored and runs when %s connects", pc, f.wait, ex.Command.RequestID, pc)}
	case r := <-ex.Results:
		a.resolveOutput(ctx, c, &r)
		if f.output == "json" {
			enc := json.NewEncoder(a.out)
			enc.SetIndent("", "  ")
			_ = enc.Encode(r)
		} else {
			io.WriteString(a.out, r.Stdout)
			io.WriteString(a.errOut, r.Stderr)
		}
		if r.ExitCode != 0 {
			return &exitError{code: r.ExitCode}
		}
		return nil
	}
}

// resolveOutput replaces overflow references by the stored output.
func (a *app) resolveOutput(ctx context.Context, c *fleetclient.Client, r *wire.ExecResult) {
	if r.StdoutObject != "" {
		if s, err := c.Output(ctx, r.StdoutObject); err == nil {
			r.Stdout = s
		} else {
			fmt.Fprintf(a.errOut, "kanade: %v\n", err)
		}
	}
	if r.StderrObject != "" {
		if s, err := c.Output(ctx, r.StderrObject); err == nil {
			r.Stderr = s
		} else {
			fmt.Fprintf(a.errOut, "kanade: %v\n", err)
		}
	}
}

type broadcastSummary struct {
	RequestID  string            `json:"request_id"`
	Results    []wire.ExecResult `json:"results"`
	Succeeded  int               `json:"succeeded"`
	Failed     int               `json:"failed"`
	NoAnswer   []string          `json:"no_answer"`
	Online     int               `json:"online_at_start"`
	WaitedSecs float64           `json:"waited_secs"`
}

func (a *app) runMany(ctx context.Context, c *fleetclient.Client, ex *fleetclient.Execution, surveyed <-chan []wire.Heartbeat, f runFlags) error {
	start := time.Now()
	sum := broadcastSummary{RequestID: ex.Command.RequestID}
	answered := map[string]bool{}
	var expected map[string]bool
	if f.output == "text" {
		fmt.Fprintf(a.errOut, "request %s (exec_id %s) published; waiting up to %s\n", ex.Command.RequestID, ex.Command.ExecID, f.wait)
	}
	complete := func() bool {
		if expected == nil || len(expected) == 0 {
			return false
		}
		for pc := range expected {
			if !answered[pc] {
				return false
			}
		}
		return true
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case hbs := <-surveyed:
			expected = map[string]bool{}
			for _, hb := range hbs {
				expected[hb.PCID] = true
			}
			sum.Online = len(expected)
			surveyed = nil
			if complete() {
				break loop
			}
		case r, ok := <-ex.Results:
			if !ok {
				break loop
			}
			if answered[r.PCID] {
				continue
			}
			answered[r.PCID] = true
			a.resolveOutput(ctx, c, &r)
			sum.Results = append(sum.Results, r)
			if r.ExitCode == 0 && !r.Skipped {
				sum.Succeeded++
			} else {
				sum.Failed++
			}
			if f.output == "text" {
				a.printBroadcastResult(r, len(answered), len(expected))
			}
			if complete() {
				break loop
			}
		}
	}
	for pc := range expected {
		if !answered[pc] {
			sum.NoAnswer = append(sum.NoAnswer, pc)
		}
	}
	slices.Sort(sum.NoAnswer)
	sum.WaitedSecs = time.Since(start).Seconds()
	if f.output == "json" {
		enc := json.NewEncoder(a.out)
		enc.SetIndent("", "  ")
		return enc.Encode(sum)
	}
	fmt.Fprintf(a.out, "\n%d answered (%d succeeded, %d failed) in %.1fs; %d online at start", len(sum.Results), sum.Succeeded, sum.Failed, sum.WaitedSecs, sum.Online)
	if len(sum.NoAnswer) > 0 {
		fmt.Fprintf(a.out, "; no answer within %s from: %s", f.wait, strings.Join(sum.NoAnswer, ", "))
	}
	fmt.Fprintln(a.out)
	if sum.Failed > 0 || len(sum.NoAnswer) > 0 {
		return &exitError{code: exitFailure}
	}
	return nil
}

func (a *app) printBroadcastResult(r wire.ExecResult, n, of int) {
	count := fmt.Sprintf("%d", n)
	if of > 0 {
		count = fmt.Sprintf("%d/%d", n, of)
	}
	state := fmt.Sprintf("exit %d", r.ExitCode)
	if r.Skipped {
		state += " (skipped)"
	}
	fmt.Fprintf(a.out, "[%s] %s: %s\n", count, r.PCID, state)
	for _, line := range strings.Split(strings.TrimRight(r.Stdout, "\n"), "\n") {
		if line != "" {
			fmt.Fprintf(a.out, "    %s\n", line)
		}
	}
	for _, line := range strings.Split(strings.TrimRight(r.Stderr, "\n"), "\n") {
		if line != "" {
			fmt.Fprintf(a.out, "    ! %s\n", line)
		}
	}
}
