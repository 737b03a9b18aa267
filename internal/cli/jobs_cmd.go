package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kanade-project/kanade/internal/jobs"
	"github.com/kanade-project/kanade/internal/scheduler"
	"github.com/kanade-project/kanade/internal/store"
)

// apiCmds are the commands that work through the HTTP API.
func (a *app) apiCmds() []*cobra.Command {
	o := &apiOpts{}
	cmds := []*cobra.Command{a.loginCmd(o), a.logoutCmd(), a.jobCmd(o), a.execCmd(o), a.scheduleCmd(o), a.resultsCmd(o)}
	for _, c := range cmds[2:] {
		o.addAPIFlag(c)
	}
	return cmds
}

func (a *app) loginCmd(o *apiOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Store an API token (read from stdin) for the HTTP API commands",
		Long: `login reads an API token from stdin (never from a flag: a flag shows in
process lists), checks it against the API and stores it with the URL in
<user config dir>/kanade/credentials.json (mode 0600).

  kanade login --api https://kanade.example:8080 < token.txt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			base := o.api
			if base == "" {
				base = os.Getenv(EnvAPIURL)
			}
			if base == "" {
				base = DefaultAPI
			}
			base, err := normalizeAPI(base)
			if err != nil {
				return &exitError{code: exitUsage, msg: err.Error()}
			}
			tok, err := a.readToken()
			if err != nil {
				return err
			}
			c, err := o.withCA(newAPIClient(base, tok))
			if err != nil {
				return err
			}
			var h struct {
				Online int `json:"online"`
				Total  int `json:"total"`
			}
			if err := c.do(cmd.Context(), "GET", "/api/health/fleet", nil, "", &h); err != nil {
				return asExit(err)
			}
			p, err := saveCredentials(credentials{API: base, Token: tok})
			if err != nil {
				return &exitError{code: exitFailure, msg: "cannot store the credentials: " + err.Error()}
			}
			fmt.Fprintf(a.out, "logged in to %s (%d of %d agents online); credentials in %s\n", base, h.Online, h.Total, p)
			return nil
		},
	}
	o.addAPIFlag(cmd)
	return cmd
}

// readToken reads one line from stdin, without echo on a terminal.
func (a *app) readToken() (string, error) {
	var tok string
	if f, ok := a.in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(a.errOut, "API token: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.errOut)
		if err != nil {
			return "", &exitError{code: exitFailure, msg: "cannot read the token: " + err.Error()}
		}
		tok = string(b)
	} else {
		line, err := bufio.NewReader(a.in).ReadString('\n')
		if err != nil && err != io.EOF {
			return "", &exitError{code: exitFailure, msg: "cannot read the token from stdin: " + err.Error()}
		}
		tok = line
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", &exitError{code: exitUsage, msg: "no token on stdin (pipe it in: kanade login --api URL < token.txt)"}
	}
	return tok, nil
}

func (a *app) logoutCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Delete the credentials stored by `kanade login`",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := credentialsPath()
			if err != nil {
				return &exitError{code: exitFailure, msg: err.Error()}
			}
			switch err := os.Remove(p); {
			case err == nil:
				fmt.Fprintln(a.out, "logged out; removed", p)
			case os.IsNotExist(err):
				fmt.Fprintln(a.out, "not logged in")
			default:
				return &exitError{code: exitFailure, msg: err.Error()}
			}
			return nil
		},
	}
}

// readInput reads -f: a file, or stdin for "-".
func (a *app) readInput(name string) ([]byte, error) {
	if name == "" {
		return nil, &exitError{code: exitUsage, msg: "-f is required (a YAML file, or - for stdin)"}
	}
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(a.in)
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, &exitError{code: exitUsage, msg: err.Error()}
	}
	return b, nil
}

type jobEntry struct {
	Manifest jobs.Manifest `json:"Manifest"`
	Revision uint64        `json:"Revision"`
	YAML     []byte        `json:"YAML"`
}

// postYAML sends a YAML document (a file, or - for stdin) to path, as a
// replacement of the stored revision rev when rev > 0, and decodes the
// answer into out. Job and schedule create share it.
func (a *app) postYAML(ctx context.Context, o *apiOpts, file, path string, rev uint64, out any) error {
	body, err := a.readInput(file)
	if err != nil {
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	if rev > 0 {
		path += "?revision=" + strconv.FormatUint(rev, 10)
	}
	if err := c.do(ctx, "POST", path, body, "application/yaml", out); err != nil {
		return asExit(err)
	}
	return nil
}

func (a *app) jobCmd(o *apiOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "job", Short: "Manage the job catalog through the HTTP API"}
	var file string
	create := &cobra.Command{
		Use:   "create -f manifest.yaml",
		Short: "Store a job manifest (a new id, or --revision N to replace it)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rev, _ := cmd.Flags().GetUint64("revision")
			var res struct {
				ID       string `json:"id"`
				Version  string `json:"version"`
				Revision uint64 `json:"revision"`
			}
			if err := a.postYAML(cmd.Context(), o, file, "/api/jobs", rev, &res); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "job %s version %s stored at revision %d\n", res.ID, res.Version, res.Revision)
			return nil
		},
	}
	create.Flags().StringVarP(&file, "file", "f", "", "manifest file (- for stdin)")
	create.Flags().Uint64("revision", 0, "replace the job stored at this revision (0: create)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the jobs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			var res struct {
				Jobs []jobEntry `json:"jobs"`
			}
			if err := c.do(cmd.Context(), "GET", "/api/jobs", nil, "", &res); err != nil {
				return asExit(err)
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tVERSION\tREVISION\tDESCRIPTION")
			for _, e := range res.Jobs {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", e.Manifest.ID, e.Manifest.Version, e.Revision, firstLine(e.Manifest.Description))
			}
			return tw.Flush()
		},
	}

	show := &cobra.Command{
		Use:   "show <id>",
		Short: "Print a job's stored manifest",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			var e jobEntry
			if err := c.do(cmd.Context(), "GET", "/api/jobs/"+url.PathEscape(args[0]), nil, "", &e); err != nil {
				return asExit(err)
			}
			fmt.Fprintf(a.out, "# job %s version %s, revision %d\n", e.Manifest.ID, e.Manifest.Version, e.Revision)
			a.out.Write(e.YAML)
			if len(e.YAML) > 0 && e.YAML[len(e.YAML)-1] != '\n' {
				fmt.Fprintln(a.out)
			}
			return nil
		},
	}

	del := a.deleteCmd(o, "job", "/api/jobs/")
	cmd.AddCommand(create, list, show, del)
	return cmd
}

// execView is GET /api/exec/{exec_id}.
type execView struct {
	Execution jobs.Execution  `json:"execution"`
	Counters  store.Counters  `json:"counters"`
	PCs       []store.PCState `json:"pcs"`
}

func (a *app) execCmd(o *apiOpts) *cobra.Command {
	var (
		all                     bool
		groups, pcs             []string
		waves, jitter, deadline string
		stopPct                 float64
		wait                    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "exec <job> (--all | --group G… | --pcs a,b | --waves g1:0s,g2:30m)",
		Short: "Run a catalog job and follow it until it is done",
		Long: `exec starts a catalog job and polls it every second until every wave is
done and no PC is running (and the counts held still for one poll), or until
--wait passes. It exits 1 when a PC failed or a wave was stopped, 3 when
--wait passed first.

With --waves the waves' groups are the target: leave --all, --group and --pcs out.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			plan := map[string]any{}
			target := map[string]any{}
			if all {
				target["all"] = true
			}
			if len(groups) > 0 {
				target["groups"] = groups
			}
			if len(pcs) > 0 {
				target["pcs"] = pcs
			}
			switch {
			case waves != "" && len(target) > 0:
				return &exitError{code: exitUsage, msg: "--waves names the groups to run on; leave out --all, --group and --pcs"}
			case waves == "" && len(target) == 0:
				return &exitError{code: exitUsage, msg: "say who runs the job: --all, --group G, --pcs a,b or --waves g1:0s,g2:30m"}
			case all && (len(groups) > 0 || len(pcs) > 0):
				return &exitError{code: exitUsage, msg: "--all already selects every PC; leave out --group and --pcs"}
			}
			if waves != "" {
				ws, err := parseWaves(waves)
				if err != nil {
					return &exitError{code: exitUsage, msg: err.Error()}
				}
				plan["rollout"] = map[string]any{"waves": ws, "stop_if_failed_pct": stopPct}
			} else {
				if cmd.Flags().Changed("stop-if-failed-pct") {
					return &exitError{code: exitUsage, msg: "--stop-if-failed-pct applies to --waves"}
				}
				plan["target"] = target
			}
			if jitter != "" {
				plan["jitter"] = jitter
			}
			if deadline != "" {
				plan["deadline"] = deadline
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			var x jobs.Execution
			if err := c.do(cmd.Context(), "POST", "/api/exec", map[string]any{"job": args[0], "plan": plan}, "", &x); err != nil {
				return asExit(err)
			}
			fmt.Fprintf(a.out, "exec %s started (job %s version %s)\n", x.ExecID, x.JobID, x.Version)
			return a.follow(cmd.Context(), c, x.ExecID, wait)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&all, "all", false, "run on every PC")
	f.StringSliceVar(&groups, "group", nil, "run on the PCs of these groups (repeat or comma-separate)")
	f.StringSliceVar(&pcs, "pcs", nil, "run on these PCs (comma-separated)")
	f.StringVar(&waves, "waves", "", "roll out group by group: group:delay,… (delay after the previous wave)")
	f.Float64Var(&stopPct, "stop-if-failed-pct", 0, "with --waves: hold the next wave when more than this % of results failed (0: any failure)")
	f.StringVar(&jitter, "jitter", "", "random delay each agent waits before starting (e.g. 30s)")
	f.StringVar(&deadline, "deadline", "", "agents that have not started this long after publishing skip the job")
	f.DurationVar(&wait, "wait", 10*time.Minute, "how long to follow the execution")
	return cmd
}

func parseWaves(s string) ([]map[string]any, error) {
	var out []map[string]any
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		g, d, _ := strings.Cut(part, ":")
		if g == "" {
			return nil, fmt.Errorf("--waves %q: expected group:delay,… (e.g. canary:0s,main:30m)", s)
		}
		w := map[string]any{"group": g}
		if d != "" && d != "0" && d != "0s" {
			w["delay"] = d
		}
		out = append(out, w)
	}
	return out, nil
}

// follow polls an execution every second until it is done or wait passes.
func (a *app) follow(ctx context.Context, c *apiClient, execID string, wait time.Duration) error {
	live := isTerminal(a.errOut)
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var v execView
	lastLine, lastKey := "", ""
	for {
		if err := c.do(ctx, "GET", "/api/exec/"+url.PathEscape(execID), nil, "", &v); err != nil {
			if live {
				fmt.Fprintln(a.errOut)
			}
			return asExit(err)
		}
		line, key, done := execStatus(v)
		if live {
			fmt.Fprintf(a.errOut, "\r\033[K%s", line)
		} else if line != lastLine {
			fmt.Fprintln(a.errOut, line)
		}
		lastLine = line
		// Done once the counts held still for one poll: a PC reports
		// started a moment after the wave is published.
		if done && key == lastKey {
			break
		}
		lastKey = key
		if !done {
			lastKey = ""
		}
		if time.Now().After(deadline) {
			if live {
				fmt.Fprintln(a.errOut)
			}
			a.summary(v)
			return &exitError{code: exitNoAnswer, msg: fmt.Sprintf("exec %s still not done after --wait %s; follow it with `kanade results %s`", execID, wait, execID)}
		}
		select {
		case <-ctx.Done():
			if live {
				fmt.Fprintln(a.errOut)
			}
			return &exitError{code: exitFailure, msg: "interrupted; the execution goes on"}
		case <-tick.C:
		}
	}
	if live {
		fmt.Fprintln(a.errOut)
	}
	a.summary(v)
	stopped := 0
	for _, w := range v.Execution.Waves {
		if w.State != jobs.WavePublished && w.Done() {
			stopped++
		}
	}
	if n := pcCounts(v.PCs)["failed"] + pcCounts(v.PCs)["killed"]; n > 0 || stopped > 0 {
		return &exitError{code: exitFailure, msg: fmt.Sprintf("exec %s: %d PC(s) failed or killed, %d wave(s) not published", execID, n, stopped)}
	}
	return nil
}

func pcCounts(pcs []store.PCState) map[string]int {
	m := map[string]int{}
	for _, p := range pcs {
		m[p.State]++
	}
	return m
}

// execStatus is the one-line status, a key of what may still change, and
// whether every wave is done with no PC running and at least one PC heard
// from (or nothing was published).
func execStatus(v execView) (line, key string, done bool) {
	ws := map[string]int{}
	allDone := true
	for _, w := range v.Execution.Waves {
		ws[w.State]++
		if !w.Done() {
			allDone = false
		}
	}
	pc := pcCounts(v.PCs)
	line = fmt.Sprintf("exec %s: waves %d published, %d pending, %d stopped | PCs %d running, %d succeeded, %d failed, %d skipped, %d killed",
		v.Execution.ExecID, ws[jobs.WavePublished], ws[jobs.WavePending]+ws[jobs.WavePublishing], ws[jobs.WaveStopped]+ws[jobs.WaveCancelled]+ws[jobs.WaveFailed],
		pc["running"], pc["succeeded"], pc["failed"], pc["skipped"], pc["killed"])
	key = fmt.Sprint(ws, pc, len(v.PCs))
	done = allDone && pc["running"] == 0 && (len(v.PCs) > 0 || ws[jobs.WavePublished] == 0)
	return line, key, done
}

func (a *app) summary(v execView) {
	pc := pcCounts(v.PCs)
	fmt.Fprintf(a.out, "exec %s: %d PC(s): %d succeeded, %d failed, %d skipped, %d killed, %d running\n",
		v.Execution.ExecID, len(v.PCs), pc["succeeded"], pc["failed"], pc["skipped"], pc["killed"], pc["running"])
	for i, w := range v.Execution.Waves {
		name := w.Group
		if name == "" {
			name = "target"
		}
		line := fmt.Sprintf("  wave %d (%s): %s", i+1, name, w.State)
		if w.Reason != "" {
			line += ": " + w.Reason
		}
		fmt.Fprintln(a.out, line)
	}
}

func (a *app) scheduleCmd(o *apiOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "schedule", Short: "Manage job schedules through the HTTP API"}
	var file string
	var rev uint64
	create := &cobra.Command{
		Use:   "create -f schedule.yaml",
		Short: "Store a schedule (a new id, or --revision N to replace it)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct {
				ID       string `json:"id"`
				Revision uint64 `json:"revision"`
			}
			if err := a.postYAML(cmd.Context(), o, file, "/api/schedules", rev, &res); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "schedule %s stored at revision %d\n", res.ID, res.Revision)
			return nil
		},
	}
	create.Flags().StringVarP(&file, "file", "f", "", "schedule file (- for stdin)")
	create.Flags().Uint64Var(&rev, "revision", 0, "replace the schedule stored at this revision (0: create)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the schedules",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			var res struct {
				Schedules []struct {
					Schedule scheduler.Schedule `json:"Schedule"`
					Revision uint64             `json:"Revision"`
				} `json:"schedules"`
			}
			if err := c.do(cmd.Context(), "GET", "/api/schedules", nil, "", &res); err != nil {
				return asExit(err)
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tJOB\tENABLED\tWHEN\tTARGET\tREVISION")
			for _, e := range res.Schedules {
				s := e.Schedule
				when := s.Cron
				if s.PerPC != nil {
					if s.PerPC.Once {
						when = "per_pc: once"
					} else {
						when = "per_pc: every " + s.PerPC.Every.String()
					}
				} else if s.Timezone != "" {
					when += " (" + s.Timezone + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%s\t%d\n", s.ID, s.Job, s.Enabled, when, targetString(s.Target), e.Revision)
			}
			return tw.Flush()
		},
	}

	del := a.deleteCmd(o, "schedule", "/api/schedules/")

	toggle := func(on bool) *cobra.Command {
		verb := "disable"
		if on {
			verb = "enable"
		}
		return &cobra.Command{
			Use:   verb + " <id>",
			Short: strings.ToUpper(verb[:1]) + verb[1:] + " a schedule",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := o.client()
				if err != nil {
					return err
				}
				var res struct {
					Revision uint64 `json:"revision"`
				}
				if err := c.do(cmd.Context(), "POST", "/api/schedules/"+url.PathEscape(args[0])+"/"+verb, nil, "", &res); err != nil {
					return asExit(err)
				}
				fmt.Fprintf(a.out, "schedule %s %sd (revision %d)\n", args[0], verb, res.Revision)
				return nil
			},
		}
	}
	cmd.AddCommand(create, list, del, toggle(true), toggle(false))
	return cmd
}

func targetString(t jobs.Target) string {
	if t.All {
		return "all"
	}
	var parts []string
	if len(t.Groups) > 0 {
		parts = append(parts, "groups="+strings.Join(t.Groups, ","))
	}
	if len(t.PCs) > 0 {
		parts = append(parts, "pcs="+strings.Join(t.PCs, ","))
	}
	return strings.Join(parts, " ")
}

func (a *app) resultsCmd(o *apiOpts) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "results <exec_id>",
		Short: "Show the results of an execution",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "" && output != "json" && output != "table" {
				return &exitError{code: exitUsage, msg: fmt.Sprintf("-o %q: expected table or json", output)}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			q := url.Values{"exec_id": {args[0]}, "limit": {"1000"}}
			var res struct {
				Results []store.Result `json:"results"`
			}
			if err := c.do(cmd.Context(), "GET", "/api/results?"+q.Encode(), nil, "", &res); err != nil {
				return asExit(err)
			}
			if output == "json" {
				enc := json.NewEncoder(a.out)
				enc.SetIndent("", "  ")
				return enc.Encode(res.Results)
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PC\tEXIT\tOUTCOME\tFINISHED\tSTDOUT")
			for _, r := range res.Results {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", r.PCID, r.ExitCode, r.Outcome, r.FinishedAt.Local().Format(time.DateTime), firstLine(r.Stdout))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(res.Results) == 0 {
				fmt.Fprintf(a.errOut, "no results for %s yet\n", args[0])
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

func firstLine(s string) string {
	s = strings.TrimLeft(s, "\r\n")
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

// deleteCmd is `kanade <kind> delete <id> [--revision N]` over DELETE
// <base><id>: with --revision the server deletes only if the object is
// still at that revision.
func (a *app) deleteCmd(o *apiOpts, kind, base string) *cobra.Command {
	var rev uint64
	cmd := &cobra.Command{
		Use:   "delete <id>",
		Short: "Delete a " + kind + " (--revision N: only if it is still at that revision)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			path := base + url.PathEscape(args[0])
			if rev > 0 {
				path += "?revision=" + strconv.FormatUint(rev, 10)
			}
			if err := c.do(cmd.Context(), "DELETE", path, nil, "", nil); err != nil {
				return asExit(err)
			}
			fmt.Fprintf(a.out, "%s %s deleted\n", kind, args[0])
			return nil
		},
	}
	cmd.Flags().Uint64Var(&rev, "revision", 0, "delete only if the "+kind+" is at this revision")
	return cmd
}
