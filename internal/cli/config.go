package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/fleetconfig"
	"github.com/kanade-project/kanade/internal/kvcas"
	"github.com/kanade-project/kanade/internal/wire"
)

// kvTimeout bounds the KV reads and writes of one config or groups command.
const kvTimeout = 10 * time.Second

func (a *app) configCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show and change the layered fleet configuration of the agents",
		Long: `Agents read their configuration from the KV bucket agent_config, in layers:

  built-in defaults
  global            (key global; the default scope of these commands)
  each group        (key groups.<g>, --group g), in alphabetical order: the last wins
  the PC itself     (key pcs.<pc>, --pc p)

A field set in a layer overrides the layers above it. Agents watch the bucket
and apply a change within seconds. "config set" checks every value before
writing and never overwrites a change someone else made in the meantime.
"config effective <pc>" shows what one PC ends up with, and which layer set
each field.

` + fleetconfig.Usage(),
		Example: `  kanade config set heartbeat_interval=1m
  kanade config set --group canary target_version=1.4.0 target_version_jitter=30m
  kanade config get --group canary
  kanade config unset --pc pc-042 max_local_concurrent
  kanade config effective pc-042`,
	}
	cmd.AddCommand(a.configGetCmd(), a.configSetCmd(), a.configUnsetCmd(), a.configClearCmd(), a.configEffectiveCmd())
	cmd.RunE = parentRunE
	return cmd
}

// parentRunE makes a command that only groups subcommands show its help,
// and fail (exit 2) on a mistyped subcommand instead of exiting 0.
func parentRunE(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		var names []string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				names = append(names, c.Name())
			}
		}
		return &exitError{exitUsage, fmt.Sprintf("unknown command %q for %q (available: %s)", args[0], cmd.CommandPath(), strings.Join(names, ", "))}
	}
	return cmd.Help()
}

// scopeFlags select one agent_config layer.
type scopeFlags struct{ group, pc string }

func (s *scopeFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&s.group, "group", "", "the layer of this group (key groups.<g>) instead of global")
	cmd.Flags().StringVar(&s.pc, "pc", "", "the layer of this PC (key pcs.<pc>) instead of global")
}

// key returns the agent_config key of the selected layer.
func (s *scopeFlags) key(cmd *cobra.Command) (string, error) {
	groupSet, pcSet := cmd.Flags().Changed("group"), cmd.Flags().Changed("pc")
	if groupSet && pcSet {
		return "", &exitError{exitUsage, "choose one scope: --group or --pc, not both (neither: global)"}
	}
	kind, name := fleetconfig.ScopeGlobal, ""
	switch {
	case groupSet:
		kind, name = fleetconfig.ScopeGroup, s.group
	case pcSet:
		kind, name = fleetconfig.ScopePC, s.pc
	}
	sc, err := fleetconfig.NewScope(kind, name)
	if err != nil {
		return "", &exitError{exitUsage, err.Error()}
	}
	return sc.Key(), nil
}

func checkOutput(output string) error {
	if output != "text" && output != "json" {
		return &exitError{exitUsage, fmt.Sprintf("--output %q: expected text or json", output)}
	}
	return nil
}

// openKV connects and opens one bucket. The returned context carries the
// command's KV timeout; done releases everything.
func (a *app) openKV(cmd *cobra.Command, bucket string) (context.Context, *fleetclient.Client, jetstream.KeyValue, func(), error) {
	c, closeConn, err := a.connect(cmd.Context())
	if err != nil {
		return nil, nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), kvTimeout)
	done := func() { cancel(); closeConn() }
	kv, err := c.JS.KeyValue(ctx, bucket)
	if err != nil {
		done()
		return nil, nil, nil, nil, fmt.Errorf("bucket %s: %w (run `kanade jetstream setup`)", bucket, err)
	}
	return ctx, c, kv, done, nil
}

// openKey opens bucket and reads key from it: what every "show or edit
// one key" command starts with. done releases everything; it is nil when
// err is not.
func (a *app) openKey(cmd *cobra.Command, bucket, key string) (context.Context, jetstream.KeyValue, kvValue, func(), error) {
	ctx, _, kv, done, err := a.openKV(cmd, bucket)
	if err != nil {
		return nil, nil, kvValue{}, nil, err
	}
	v, err := readKey(ctx, kv, key)
	if err != nil {
		done()
		return nil, nil, kvValue{}, nil, err
	}
	return ctx, kv, v, done, nil
}

// kvValue is one key as read: Revision 0 means absent (never written, or
// deleted).
type kvValue = kvcas.Value

func readKey(ctx context.Context, kv jetstream.KeyValue, key string) (kvValue, error) {
	return kvcas.Read(ctx, kv, key)
}

// casPut and casDelete are kvcas's compare-and-set writes, with a conflict
// turned into the CLI's exit status and advice.
func casPut(ctx context.Context, kv jetstream.KeyValue, key string, value []byte, rev uint64) (uint64, error) {
	n, err := kvcas.Put(ctx, kv, key, value, rev)
	return n, cliConflict(err)
}

func casDelete(ctx context.Context, kv jetstream.KeyValue, key string, rev uint64) error {
	return cliConflict(kvcas.Delete(ctx, kv, key, rev))
}

func cliConflict(err error) error {
	var ce *kvcas.ConflictError
	if errors.As(err, &ce) {
		return &exitError{exitFailure, ce.Error() + " — run the command again"}
	}
	return err
}

// decodeScope decodes a stored layer for editing, keeping every field
// (unknown ones too). An absent key or a JSON null is an empty scope.
func decodeScope(v kvValue) (map[string]json.RawMessage, error) {
	if v.Revision == 0 {
		return map[string]json.RawMessage{}, nil
	}
	m, err := fleetconfig.DecodeEditable(v.Value)
	if err != nil {
		return nil, notObjectError(v)
	}
	return m, nil
}

// notObjectError explains a layer that cannot be edited field by field.
func notObjectError(v kvValue) error {
	return &exitError{exitFailure, fmt.Sprintf("%s/%s (revision %d) is not a JSON object, so agents ignore it: %s\nfix it with `kanade config clear` and set the fields again",
		wire.BucketAgentConfig, v.Key, v.Revision, truncate(v.Value))}
}

func truncate(b []byte) string {
	const limit = 200
	if len(b) > limit {
		return string(b[:limit]) + "…"
	}
	return string(b)
}

// isNull reports whether a stored value is JSON null (equal to absent).
func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// showRaw prints a stored JSON value compactly; absent and null are "(unset)".
func showRaw(raw json.RawMessage, ok bool) string {
	if !ok || isNull(raw) {
		return "(unset)"
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

// usageError is an exitUsage error whose message ends with the list of
// valid fields and formats.
func usageError(err error) error {
	msg, _, _ := strings.Cut(err.Error(), "\nvalid fields:")
	return &exitError{exitUsage, msg + "\nnothing written\n" + strings.TrimRight(fleetconfig.Usage(), "\n")}
}

// orderedKeys lists the known fields present in m in display order, then
// the unknown ones sorted.
func orderedKeys(m map[string]json.RawMessage) []string {
	var keys []string
	for _, f := range fleetconfig.Fields() {
		if _, ok := m[f.Name]; ok {
			keys = append(keys, f.Name)
		}
	}
	var unknown []string
	for k := range m {
		if _, ok := fleetconfig.FieldByName(k); !ok {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	return append(keys, unknown...)
}

// scopeView is the JSON output of `config get`.
type scopeView struct {
	Bucket   string                     `json:"bucket"`
	Key      string                     `json:"key"`
	Exists   bool                       `json:"exists"`
	Revision uint64                     `json:"revision,omitempty"`
	Fields   map[string]json.RawMessage `json:"fields"`
	// Raw is the stored value when it is not a JSON object.
	Raw      string               `json:"raw,omitempty"`
	Problems []wire.ConfigProblem `json:"problems,omitempty"`
}

func (a *app) configGetCmd() *cobra.Command {
	var scope scopeFlags
	var output string
	cmd := &cobra.Command{
		Use:   "get [--group g | --pc p]",
		Short: "Show the fields stored in one layer (global by default)",
		Long: `Show the fields stored in one layer of agent_config exactly as stored, with
the KV revision. Fields agents cannot use are flagged: unknown fields are
ignored, and a value of the wrong type or out of range makes the agents use
the default for that field. An absent layer is shown as empty (exit 0).

To see what a PC ends up with after every layer, use "kanade config effective".`,
		Example: `  kanade config get
  kanade config get --group canary -o json
  kanade config get --pc pc-042`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := scope.key(cmd)
			if err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			_, _, v, done, err := a.openKey(cmd, wire.BucketAgentConfig, key)
			if err != nil {
				return err
			}
			defer done()
			return a.printScope(v, output)
		},
	}
	scope.add(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text | json")
	return cmd
}

func (a *app) printScope(v kvValue, output string) error {
	view := scopeView{Bucket: wire.BucketAgentConfig, Key: v.Key, Exists: v.Revision > 0, Revision: v.Revision, Fields: map[string]json.RawMessage{}}
	notObject := false
	if v.Revision > 0 {
		var ok bool
		view.Fields, view.Problems, ok = fleetconfig.Inspect(v.Key, v.Value)
		notObject = !ok
		if notObject {
			view.Raw = string(v.Value)
		}
	}
	if output == "json" {
		enc := json.NewEncoder(a.out)
		enc.SetIndent("", "  ")
		return enc.Encode(view)
	}
	where := wire.BucketAgentConfig + "/" + v.Key
	switch {
	case v.Revision == 0:
		fmt.Fprintf(a.out, "%s is empty: no fields set in this layer (it does not exist)\n", where)
		return nil
	case notObject:
		fmt.Fprintf(a.out, "%s (revision %d) is not a JSON object; agents ignore this layer:\n  %s\n", where, v.Revision, truncate(v.Value))
		return nil
	}
	fmt.Fprintf(a.out, "%s (revision %d)\n", where, v.Revision)
	keys := orderedKeys(view.Fields)
	if len(keys) == 0 {
		fmt.Fprintln(a.out, "  no fields set")
		return nil
	}
	problem := map[string]string{}
	for _, p := range view.Problems {
		problem[p.Field] = p.Message
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	for _, k := range keys {
		raw := view.Fields[k]
		note := ""
		if _, known := fleetconfig.FieldByName(k); !known {
			note = "(unknown field: agents ignore it)"
		} else if isNull(raw) {
			note = "(null: same as unset)"
		} else if msg, bad := problem[k]; bad {
			note = "(invalid: " + msg + ")"
		}
		if note != "" {
			note = "\t" + note
		}
		fmt.Fprintf(tw, "  %s\t%s%s\n", k, showRaw(raw, true), note)
	}
	return tw.Flush()
}

// configPair is one validated field=value of `config set`.
type configPair struct {
	field string
	raw   json.RawMessage
}

func parsePairs(args []string) ([]configPair, error) {
	var pairs []configPair
	seen := map[string]bool{}
	for _, arg := range args {
		name, input, ok := strings.Cut(arg, "=")
		if !ok {
			return nil, usageError(fmt.Errorf("%q: expected field=value, like heartbeat_interval=1m", arg))
		}
		name = strings.TrimSpace(name)
		raw, err := fleetconfig.Validate(name, input)
		if err != nil {
			return nil, usageError(err)
		}
		if seen[name] {
			return nil, usageError(fmt.Errorf("%s is given more than once", name))
		}
		seen[name] = true
		pairs = append(pairs, configPair{name, raw})
	}
	return pairs, nil
}

func (a *app) configSetCmd() *cobra.Command {
	var scope scopeFlags
	cmd := &cobra.Command{
		Use:   "set <field>=<value>... [--group g | --pc p]",
		Short: "Set fields of one layer (global by default)",
		Long: `Set one or more fields of one layer of agent_config. Every pair is checked
first: one bad pair writes nothing (exit 2). The other fields already stored
in the layer are kept. The write succeeds only if nobody changed the layer
since it was read; otherwise nothing is written and the command says so.

` + fleetconfig.Usage(),
		Example: `  kanade config set heartbeat_interval=1m inventory_enabled=false
  kanade config set --group canary target_version=1.4.0
  kanade config set --pc pc-042 max_local_concurrent=2`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := scope.key(cmd)
			if err != nil {
				return err
			}
			pairs, err := parsePairs(args)
			if err != nil {
				return err
			}
			ctx, kv, cur, done, err := a.openKey(cmd, wire.BucketAgentConfig, key)
			if err != nil {
				return err
			}
			defer done()
			m, err := decodeScope(cur)
			if err != nil {
				return err
			}
			var lines []string
			changed := false
			for _, p := range pairs {
				old, had := m[p.field]
				if had && fleetconfig.SameValue(old, p.raw) {
					lines = append(lines, fmt.Sprintf("  %s: %s (unchanged)", p.field, showRaw(p.raw, true)))
					continue
				}
				m[p.field] = p.raw
				changed = true
				lines = append(lines, fmt.Sprintf("  %s: %s → %s", p.field, showRaw(old, had), showRaw(p.raw, true)))
			}
			return a.writeScope(ctx, kv, cur, m, changed, lines)
		},
	}
	scope.add(cmd)
	return cmd
}

// writeScope stores m when changed (compare-and-set against cur) and
// prints what changed.
func (a *app) writeScope(ctx context.Context, kv jetstream.KeyValue, cur kvValue, m map[string]json.RawMessage, changed bool, lines []string) error {
	where := wire.BucketAgentConfig + "/" + cur.Key
	if !changed {
		fmt.Fprintf(a.out, "%s:\n%s\nnothing changed; not written", where, strings.Join(lines, "\n"))
		if cur.Revision > 0 {
			fmt.Fprintf(a.out, " (still revision %d)", cur.Revision)
		}
		fmt.Fprintln(a.out)
		return nil
	}
	value, err := json.Marshal(m)
	if err != nil {
		return err
	}
	rev, err := casPut(ctx, kv, cur.Key, value, cur.Revision)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.out, "%s:\n%s\nwritten: revision %d\n", where, strings.Join(lines, "\n"), rev)
	return nil
}

func (a *app) configUnsetCmd() *cobra.Command {
	var scope scopeFlags
	cmd := &cobra.Command{
		Use:   "unset <field>... [--group g | --pc p]",
		Short: "Remove fields from one layer, so lower layers or the defaults apply",
		Long: `Remove fields from one layer of agent_config; the PCs then get them from the
layers above or the built-in defaults. Removing the last field leaves an
empty layer ({}); "kanade config clear" deletes the layer itself. Like set,
nothing is written when someone changed the layer since it was read.

` + fleetconfig.Usage(),
		Example: `  kanade config unset heartbeat_interval
  kanade config unset --group canary target_version target_version_jitter`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := scope.key(cmd)
			if err != nil {
				return err
			}
			for _, name := range args {
				if _, ok := fleetconfig.FieldByName(name); !ok {
					return usageError(fmt.Errorf("unknown field %q", name))
				}
			}
			ctx, kv, cur, done, err := a.openKey(cmd, wire.BucketAgentConfig, key)
			if err != nil {
				return err
			}
			defer done()
			if cur.Revision == 0 {
				fmt.Fprintf(a.out, "%s/%s is empty (it does not exist); nothing to unset\n", wire.BucketAgentConfig, key)
				return nil
			}
			m, err := decodeScope(cur)
			if err != nil {
				return err
			}
			var lines []string
			changed := false
			seen := map[string]bool{}
			for _, name := range args {
				if seen[name] {
					continue
				}
				seen[name] = true
				old, had := m[name]
				if !had {
					lines = append(lines, fmt.Sprintf("  %s: not set", name))
					continue
				}
				delete(m, name)
				changed = true
				lines = append(lines, fmt.Sprintf("  %s: %s → (unset)", name, showRaw(old, true)))
			}
			return a.writeScope(ctx, kv, cur, m, changed, lines)
		},
	}
	scope.add(cmd)
	return cmd
}

func (a *app) configClearCmd() *cobra.Command {
	var scope scopeFlags
	cmd := &cobra.Command{
		Use:   "clear [--group g | --pc p]",
		Short: "Delete one layer (global by default)",
		Long: `Delete one layer of agent_config: every field it set comes from the other
layers or the defaults again. Nothing is deleted when someone changed the
layer since it was read.`,
		Example: `  kanade config clear --pc pc-042
  kanade config clear --group canary`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := scope.key(cmd)
			if err != nil {
				return err
			}
			ctx, kv, cur, done, err := a.openKey(cmd, wire.BucketAgentConfig, key)
			if err != nil {
				return err
			}
			defer done()
			where := wire.BucketAgentConfig + "/" + key
			if cur.Revision == 0 {
				fmt.Fprintf(a.out, "%s is already empty (it does not exist); nothing deleted\n", where)
				return nil
			}
			if err := casDelete(ctx, kv, key, cur.Revision); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "deleted %s (was revision %d: %s)\n", where, cur.Revision, truncate(cur.Value))
			return nil
		},
	}
	scope.add(cmd)
	return cmd
}

// effectiveReport is the JSON output of `config effective`: a
// wire.ConfigReport resolved by this CLI from KV, plus what the agent said.
type effectiveReport struct {
	wire.ConfigReport
	// CPUs is the CPU count used for max_local_concurrent's default: from
	// --cpus, else from the agent's report; 0 when unknown, in which case a
	// defaulted max_local_concurrent is shown as 0, meaning "the PC's CPU
	// count".
	CPUs int `json:"cpus"`
	// Agent is what the agent answered on agents.<pc>.config, if it did.
	Agent       *wire.ConfigReport `json:"agent,omitempty"`
	AgentError  string             `json:"agent_error,omitempty"`
	Differences []configDifference `json:"differences,omitempty"`
}

// configDifference is a field on which the agent's report and the CLI's
// resolution disagree.
type configDifference struct {
	Field       string `json:"field"`
	KV          string `json:"kv"`
	KVSource    string `json:"kv_source"`
	Agent       string `json:"agent"`
	AgentSource string `json:"agent_source"`
}

func (a *app) configEffectiveCmd() *cobra.Command {
	var output string
	var cpus int
	var agentTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "effective <pc>",
		Short: "Show the configuration one PC ends up with, and which layer set each field",
		Long: `Resolve a PC's configuration from KV exactly as the agent does (same code):
the defaults, then global, then each of the PC's groups (agent_groups/<pc>) in
alphabetical order, then pcs.<pc>. For each field it shows the value and the
layer that set it (default, global, group:<g> or pc), then the fields set by
more than one group (the last group in alphabetical order wins) and the values
agents cannot use (that field falls back to its default).

The default of max_local_concurrent is the PC's CPU count. The command also
asks the agent for its own view (agents.<pc>.config, waiting --agent-timeout);
when it answers, its CPU count is used and any difference from the KV view is
shown (right after a change, an agent may not have applied it yet). Without
an answer, pass --cpus to resolve that default.`,
		Example: `  kanade config effective pc-042
  kanade config effective pc-042 --cpus 8 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pc := args[0]
			if err := fleetconfig.CheckKeyToken("pc", pc); err != nil {
				return &exitError{exitUsage, err.Error()}
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			if cpus < 0 {
				return &exitError{exitUsage, fmt.Sprintf("--cpus %d: expected a CPU count ≥ 1 (0: unknown)", cpus)}
			}
			c, closeConn, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := context.WithTimeout(cmd.Context(), kvTimeout)
			defer cancel()

			type answer struct {
				rep *wire.ConfigReport
				err error
			}
			asked := make(chan answer, 1)
			if agentTimeout > 0 {
				go func() {
					r, err := askAgentConfig(ctx, c.NC, pc, agentTimeout)
					asked <- answer{r, err}
				}()
			} else {
				asked <- answer{nil, errors.New("not asked (--agent-timeout 0)")}
			}
			layers, err := readLayers(ctx, c.JS, pc)
			if err != nil {
				return err
			}
			ans := <-asked
			rep := effectiveReport{Agent: ans.rep, CPUs: cpus}
			if ans.err != nil {
				rep.AgentError = ans.err.Error()
			}
			if rep.CPUs == 0 && ans.rep != nil && ans.rep.Sources["max_local_concurrent"] == "default" && ans.rep.Effective.MaxLocalConcurrent >= 1 {
				rep.CPUs = ans.rep.Effective.MaxLocalConcurrent
			}
			rep.ConfigReport = layers.resolve(rep.CPUs)
			if ans.rep != nil {
				rep.Differences = diffReports(rep.ConfigReport, *ans.rep)
			}
			if output == "json" {
				enc := json.NewEncoder(a.out)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return a.printEffective(rep, layers)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text | json")
	cmd.Flags().IntVar(&cpus, "cpus", 0, "the PC's CPU count, for max_local_concurrent's default (0: ask the agent)")
	cmd.Flags().DurationVar(&agentTimeout, "agent-timeout", time.Second, "how long to wait for the agent's own report (0: do not ask)")
	return cmd
}

// askAgentConfig requests the agent's ConfigReport.
func askAgentConfig(ctx context.Context, nc *nats.Conn, pc string, timeout time.Duration) (*wire.ConfigReport, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, wire.SubjectAgentConfig(pc), nil)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, fmt.Errorf("no agent is connected as %s", pc)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return nil, fmt.Errorf("agent %s did not answer within %s", pc, timeout)
	case err != nil:
		return nil, fmt.Errorf("asking agent %s: %w", pc, err)
	}
	var rep wire.ConfigReport
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return nil, fmt.Errorf("agent %s answered with something that is not a config report: %v", pc, err)
	}
	return &rep, nil
}

// pcLayers is everything read from KV for one PC.
type pcLayers struct {
	pc        string
	groups    []string
	groupsRev uint64
	global    *fleetconfig.Layer
	groupL    []fleetconfig.Layer
	pcL       *fleetconfig.Layer
	revisions map[string]uint64
	problems  []wire.ConfigProblem
}

// readLayers reads agent_groups/<pc> and the agent_config layers that apply
// to pc. Values that cannot be decoded are reported, never applied.
func readLayers(ctx context.Context, js jetstream.JetStream, pc string) (*pcLayers, error) {
	gkv, err := js.KeyValue(ctx, wire.BucketAgentGroups)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w (run `kanade jetstream setup`)", wire.BucketAgentGroups, err)
	}
	ckv, err := js.KeyValue(ctx, wire.BucketAgentConfig)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w (run `kanade jetstream setup`)", wire.BucketAgentConfig, err)
	}
	l := &pcLayers{pc: pc, groups: []string{}, revisions: map[string]uint64{}}
	gv, err := readKey(ctx, gkv, pc)
	if err != nil {
		return nil, err
	}
	l.groupsRev = gv.Revision
	if gv.Revision > 0 {
		groups, bad, err := fleetconfig.ParseGroups(gv.Value)
		if err != nil {
			l.problems = append(l.problems, wire.ConfigProblem{Layer: wire.BucketAgentGroups + "/" + pc, Message: err.Error() + "; the PC is treated as in no group"})
		}
		for _, b := range bad {
			l.problems = append(l.problems, wire.ConfigProblem{Layer: wire.BucketAgentGroups + "/" + pc, Message: b + "; that group is ignored"})
		}
		if groups != nil {
			l.groups = groups
		}
	}
	load := func(key, name string) (*fleetconfig.Layer, error) {
		v, err := readKey(ctx, ckv, key)
		if err != nil || v.Revision == 0 {
			return nil, err
		}
		layer, err := fleetconfig.ParseLayer(name, v.Value)
		if err != nil {
			l.problems = append(l.problems, wire.ConfigProblem{Layer: name, Message: err.Error() + "; layer ignored"})
			return nil, nil
		}
		l.revisions[key] = v.Revision
		return &layer, nil
	}
	if l.global, err = load(wire.ConfigKeyGlobal, "global"); err != nil {
		return nil, err
	}
	for _, g := range l.groups {
		layer, err := load(wire.ConfigKeyGroup(g), "group:"+g)
		if err != nil {
			return nil, err
		}
		if layer != nil {
			l.groupL = append(l.groupL, *layer)
		}
	}
	if l.pcL, err = load(wire.ConfigKeyPC(pc), "pc"); err != nil {
		return nil, err
	}
	return l, nil
}

// resolve runs the shared resolver. cpus 0 means unknown: a defaulted
// max_local_concurrent is then reported as 0.
func (l *pcLayers) resolve(cpus int) wire.ConfigReport {
	res := fleetconfig.Resolve(fleetconfig.Defaults(cpus), l.global, l.groupL, l.pcL)
	if cpus == 0 && res.Sources["max_local_concurrent"] == "default" {
		res.Effective.MaxLocalConcurrent = 0
	}
	return wire.ConfigReport{
		PCID:      l.pc,
		Effective: res.Effective,
		Sources:   res.Sources,
		Groups:    l.groups,
		Conflicts: res.Conflicts,
		Problems:  append(slices.Clone(l.problems), res.Problems...),
		Synced:    true,
		Revisions: l.revisions,
	}
}

// fieldValue formats one field of an effective config for display.
func fieldValue(e wire.EffectiveConfig, name string) string {
	switch name {
	case "target_version":
		if e.TargetVersion == "" {
			return "(unset)"
		}
		return e.TargetVersion
	case "target_version_jitter":
		return shortDuration(e.TargetVersionJitter.D())
	case "heartbeat_interval":
		return shortDuration(e.HeartbeatInterval.D())
	case "inventory_interval":
		return shortDuration(e.InventoryInterval.D())
	case "inventory_jitter":
		return shortDuration(e.InventoryJitter.D())
	case "inventory_enabled":
		return fmt.Sprint(e.InventoryEnabled)
	case "max_local_concurrent":
		if e.MaxLocalConcurrent == 0 {
			return "CPU count"
		}
		return fmt.Sprint(e.MaxLocalConcurrent)
	}
	return "?"
}

// shortDuration drops trailing zero units: 24h0m0s → 24h, 10m0s → 10m.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// diffReports lists the fields on which the agent disagrees with KV.
func diffReports(kv, agent wire.ConfigReport) []configDifference {
	var out []configDifference
	for _, f := range fleetconfig.Fields() {
		kvVal, agVal := fieldValue(kv.Effective, f.Name), fieldValue(agent.Effective, f.Name)
		if f.Name == "max_local_concurrent" && kv.Effective.MaxLocalConcurrent == 0 {
			kvVal = agVal // unknown CPU count: only the source can differ
		}
		if kvVal != agVal || kv.Sources[f.Name] != agent.Sources[f.Name] {
			out = append(out, configDifference{Field: f.Name, KV: kvVal, KVSource: kv.Sources[f.Name], Agent: agVal, AgentSource: agent.Sources[f.Name]})
		}
	}
	if !slices.Equal(kv.Groups, agent.Groups) {
		out = append(out, configDifference{Field: "groups", KV: strings.Join(kv.Groups, ","), Agent: strings.Join(agent.Groups, ",")})
	}
	return out
}

func (a *app) printEffective(rep effectiveReport, l *pcLayers) error {
	groups := "no group"
	if len(rep.Groups) > 0 {
		groups = "groups " + strings.Join(rep.Groups, ", ")
	}
	if l.groupsRev > 0 {
		groups += fmt.Sprintf(" (%s/%s revision %d)", wire.BucketAgentGroups, rep.PCID, l.groupsRev)
	}
	fmt.Fprintf(a.out, "%s: %s\n", rep.PCID, groups)
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FIELD\tVALUE\tSET BY")
	for _, f := range fleetconfig.Fields() {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Name, fieldValue(rep.Effective, f.Name), rep.Sources[f.Name])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rep.Conflicts) > 0 {
		fmt.Fprintln(a.out, "conflicts (a field set by several groups; the last group in alphabetical order wins):")
		for _, c := range rep.Conflicts {
			fmt.Fprintf(a.out, "  %s: set by groups %s; %s wins\n", c.Field, strings.Join(c.Groups, ", "), c.Winner)
		}
	}
	if len(rep.Problems) > 0 {
		fmt.Fprintln(a.out, "problems (values agents cannot use):")
		for _, p := range rep.Problems {
			what := p.Layer
			if p.Field != "" {
				what += " " + p.Field
			}
			if len(p.Value) > 0 {
				what += " = " + showRaw(p.Value, true)
			}
			fmt.Fprintf(a.out, "  %s: %s\n", what, p.Message)
		}
	}
	switch {
	case rep.Agent == nil:
		fmt.Fprintf(a.out, "agent: %s\n", rep.AgentError)
		if rep.Effective.MaxLocalConcurrent == 0 {
			fmt.Fprintln(a.out, "max_local_concurrent defaults to the PC's CPU count, unknown here: pass --cpus N to resolve it")
		}
	case !rep.Agent.Synced:
		fmt.Fprintf(a.out, "agent %s answered but has not read its config from KV yet\n", rep.PCID)
	case len(rep.Differences) == 0:
		fmt.Fprintf(a.out, "agent %s answered: it runs with the same configuration\n", rep.PCID)
	}
	if rep.Agent != nil && len(rep.Differences) > 0 {
		fmt.Fprintf(a.out, "agent %s runs with a different configuration (it applies KV changes within seconds; a lasting difference means it cannot read KV):\n", rep.PCID)
		tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  FIELD\tKV\tAGENT")
		for _, d := range rep.Differences {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", d.Field, withSource(d.KV, d.KVSource), withSource(d.Agent, d.AgentSource))
		}
		return tw.Flush()
	}
	return nil
}

func withSource(v, src string) string {
	if src == "" {
		return v
	}
	return v + " (" + src + ")"
}
