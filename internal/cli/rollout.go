package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/kanade-project/kanade/internal/rollout"
	"github.com/kanade-project/kanade/internal/wire"
)

// rolloutReadHook, when set (tests only), runs between reading a layer and
// writing it back, to prove the write is compare-and-set.
var rolloutReadHook func(key string)

// rolloutScope is exactly one of --global, --group g, --pc p.
type rolloutScope struct {
	scopeFlags
	global bool
}

func (s *rolloutScope) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&s.global, "global", false, "the global layer (key global): every PC")
	s.scopeFlags.add(cmd)
}

// key returns the agent_config key of the chosen layer and a description
// of the PCs it reaches.
func (s *rolloutScope) key(cmd *cobra.Command) (string, string, error) {
	n := 0
	for _, f := range []string{"global", "group", "pc"} {
		if cmd.Flags().Changed(f) {
			n++
		}
	}
	if n != 1 || (cmd.Flags().Changed("global") && !s.global) {
		return "", "", &exitError{exitUsage, "choose exactly one scope: --global, --group <g> or --pc <pc>; nothing written"}
	}
	if s.global {
		return wire.ConfigKeyGlobal, "all PCs", nil
	}
	key, err := s.scopeFlags.key(cmd)
	if err != nil {
		return "", "", err
	}
	if cmd.Flags().Changed("group") {
		return key, "group " + s.group, nil
	}
	return key, "PC " + s.pc, nil
}

func (a *app) agentRolloutCmd() *cobra.Command {
	var scope rolloutScope
	var jitter string
	var clear bool
	cmd := &cobra.Command{
		Use:   "rollout <version> (--global | --group g | --pc p) [--jitter 10m]",
		Short: "Set the agent version a scope should run (target_version)",
		Long: `Set target_version (and, with --jitter, target_version_jitter) in one layer
of agent_config: the PCs of that scope update themselves to the version.
Agents see the change within seconds; each then waits a random delay of up
to its target_version_jitter (default 10m) before downloading, verifying
and swapping to the new binary, so a fleet does not restart at once.

The version must be published ("kanade agent releases"): the command
refuses a version with no release, and warns when some platform published
for other versions lacks it (those PCs would stay on their version). The
other fields of the layer are kept; the write succeeds only if nobody
changed the layer since it was read (like "kanade config set").

A more specific layer wins: pcs.<pc> over groups.<g> over global, and of
several groups the last in alphabetical order. --clear removes
target_version and target_version_jitter from the layer again.`,
		Example: `  kanade agent rollout 1.4.0 --group canary --jitter 2m
  kanade agent rollout 1.4.0 --global
  kanade agent rollout 1.4.1 --pc pc-042
  kanade agent rollout --clear --group canary`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, reach, err := scope.key(cmd)
			if err != nil {
				return err
			}
			if clear {
				if len(args) > 0 || cmd.Flags().Changed("jitter") {
					return &exitError{exitUsage, "--clear takes no version and no --jitter; nothing written"}
				}
				return a.rolloutClear(cmd, key)
			}
			if len(args) != 1 {
				return &exitError{exitUsage, "which version? kanade agent rollout <version> (--global | --group g | --pc p); see kanade agent releases"}
			}
			version := args[0]
			var jit *string
			if cmd.Flags().Changed("jitter") {
				jit = &jitter
			}
			set, err := rollout.Fields(version, jit)
			if err != nil {
				var ie *rollout.InputError
				if errors.As(err, &ie) && ie.Field == rollout.FieldJitter {
					return &exitError{exitUsage, "--jitter: " + err.Error() + "; nothing written"}
				}
				return &exitError{exitUsage, err.Error() + "; nothing written"}
			}
			ctx, c, kv, done, err := a.openKV(cmd, wire.BucketAgentConfig)
			if err != nil {
				return err
			}
			defer done()
			rows, err := rollout.ListReleases(ctx, c.JS)
			if err != nil {
				return err
			}
			if err := a.checkRolloutVersion(version, rows); err != nil {
				return err
			}
			res, err := rollout.Update(ctx, kv, key, rollout.Options{AfterRead: rolloutReadHook}, func(m map[string]json.RawMessage) []rollout.Change {
				return rollout.Apply(m, set)
			})
			if err != nil {
				return rolloutError(err)
			}
			cur := res.Read
			where := wire.BucketAgentConfig + "/" + key
			fmt.Fprintf(a.out, "%s (%s):\n%s\n", where, reach, changeLines(res.Changes))
			if !res.Written {
				fmt.Fprintf(a.out, "already set; nothing written (still revision %d)\n", cur.Revision)
				return a.noteOverrides(ctx, kv, key)
			}
			prev := "it did not exist"
			if cur.Revision > 0 {
				prev = fmt.Sprintf("was revision %d", cur.Revision)
			}
			upTo := "its target_version_jitter (not set in this layer: from a less specific layer, or the default 10m)"
			if raw, ok := res.Layer[rollout.FieldJitter]; ok {
				var d string
				if json.Unmarshal(raw, &d) != nil {
					d = showRaw(raw, true)
				}
				upTo = "the jitter " + d + " set in this layer"
			}
			fmt.Fprintf(a.out, "written: revision %d (%s)\n", res.Revision, prev)
			fmt.Fprintf(a.out, "agents act within seconds: every agent in scope (%s) not already running %s updates after a random delay of up to %s; follow with kanade agent current and the agent_update events\n", reach, version, upTo)
			return a.noteOverrides(ctx, kv, key)
		},
	}
	scope.add(cmd)
	cmd.Flags().StringVar(&jitter, "jitter", "", "also set target_version_jitter: the longest random delay before an agent updates (e.g. 10m, 2h)")
	cmd.Flags().BoolVar(&clear, "clear", false, "remove target_version and target_version_jitter from the layer")
	return cmd
}

// checkRolloutVersion refuses a version without any usable release and
// warns about the platforms it lacks.
func (a *app) checkRolloutVersion(version string, rows []releaseRow) error {
	warnings, err := rollout.CheckVersion(version, rows)
	if err != nil {
		return &exitError{exitFailure, err.Error()}
	}
	for _, w := range warnings {
		fmt.Fprintf(a.errOut, "kanade: warning: %s\n", w)
	}
	return nil
}

// rolloutError turns a failed rollout write into the CLI's exit status and
// advice.
func rolloutError(err error) error {
	var le *rollout.LayerError
	if errors.As(err, &le) {
		return notObjectError(le.Read)
	}
	return cliConflict(err)
}

// changeLines shows what a rollout edit did, one field a line.
func changeLines(changes []rollout.Change) string {
	var lines []string
	for _, c := range changes {
		switch {
		case !c.Changed:
			lines = append(lines, fmt.Sprintf("  %s: %s (unchanged)", c.Field, showRaw(c.New, true)))
		case c.New == nil:
			lines = append(lines, fmt.Sprintf("  %s: %s → (unset)", c.Field, showRaw(c.Old, true)))
		default:
			lines = append(lines, fmt.Sprintf("  %s: %s → %s", c.Field, showRaw(c.Old, c.Old != nil), showRaw(c.New, true)))
		}
	}
	return strings.Join(lines, "\n")
}

// rolloutClear removes target_version and target_version_jitter from one
// layer with compare-and-set.
func (a *app) rolloutClear(cmd *cobra.Command, key string) error {
	ctx, _, kv, done, err := a.openKV(cmd, wire.BucketAgentConfig)
	if err != nil {
		return err
	}
	defer done()
	res, err := rollout.Update(ctx, kv, key, rollout.Options{AfterRead: rolloutReadHook}, rollout.Clear)
	if err != nil {
		return rolloutError(err)
	}
	cur := res.Read
	where := wire.BucketAgentConfig + "/" + key
	switch {
	case cur.Revision == 0:
		fmt.Fprintf(a.out, "%s does not exist: no target_version to clear; nothing written\n", where)
		return nil
	case !res.Written:
		fmt.Fprintf(a.out, "%s sets no target_version; nothing written (still revision %d)\n", where, cur.Revision)
		return nil
	}
	fmt.Fprintf(a.out, "%s:\n%s\nwritten: revision %d (was revision %d)\nthe PCs of this layer now follow a less specific layer's target_version, if any (kanade agent current); without one they keep the version they run\n",
		where, changeLines(res.Changes), res.Revision, cur.Revision)
	return nil
}

// targetRow is one agent_config layer that sets target_version (shared
// with the HTTP API).
type targetRow = rollout.Target

// noteOverrides tells which more specific layers set their own
// target_version, so a rollout does not reach their PCs.
func (a *app) noteOverrides(ctx context.Context, kv jetstream.KeyValue, key string) error {
	rows, err := rollout.ReadTargets(ctx, kv)
	if err != nil {
		return err
	}
	var over []string
	for _, r := range rollout.Overrides(rows, key) {
		over = append(over, fmt.Sprintf("%s → %s", r.Scope, r.Target))
	}
	if len(over) > 0 {
		fmt.Fprintf(a.out, "note: these more specific layers set their own target_version and win for their PCs: %s\n", strings.Join(over, ", "))
	}
	return nil
}

func (a *app) agentCurrentCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "current",
		Short: "Show the target_version set at each scope",
		Long: `Show every layer of agent_config that sets target_version: global, each
groups.<g> and each pcs.<pc>, with its target_version_jitter when the layer
sets one and the layer's revision. A PC follows its most specific layer:
pcs.<pc>, else its groups (the last in alphabetical order), else global.
"kanade config effective <pc>" resolves one PC.`,
		Example: "  kanade agent current\n  kanade agent current -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			ctx, _, kv, done, err := a.openKV(cmd, wire.BucketAgentConfig)
			if err != nil {
				return err
			}
			defer done()
			rows, err := rollout.ReadTargets(ctx, kv)
			if err != nil {
				return err
			}
			if output == "json" {
				if rows == nil {
					rows = []targetRow{}
				}
				enc := json.NewEncoder(a.out)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			if len(rows) == 0 {
				fmt.Fprintln(a.out, "no target_version set anywhere: every agent keeps the version it runs")
				return nil
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SCOPE\tTARGET\tJITTER\tREVISION")
			for _, r := range rows {
				target, jit := r.Target, r.Jitter
				if target == "" {
					target = "?"
				}
				if jit == "" {
					jit = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", r.Scope, target, jit, r.Revision)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(a.out, "JITTER -: not set in that layer (a less specific layer's, or the default 10m)")
			for _, r := range rows {
				if r.Problem != "" {
					fmt.Fprintf(a.out, "problem: %s/%s: %s\n", wire.BucketAgentConfig, r.Key, r.Problem)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text | json")
	return cmd
}
