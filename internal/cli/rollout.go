package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/kanade-project/kanade/internal/fleetconfig"
	"github.com/kanade-project/kanade/internal/release"
	"github.com/kanade-project/kanade/internal/wire"
)

const (
	fieldTarget = "target_version"
	fieldJitter = "target_version_jitter"
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
			if err := release.CheckVersion(version); err != nil {
				return &exitError{exitUsage, err.Error() + "; nothing written"}
			}
			set := map[string]json.RawMessage{}
			if set[fieldTarget], err = fleetconfig.Validate(fieldTarget, version); err != nil {
				return &exitError{exitUsage, err.Error() + "; nothing written"}
			}
			if cmd.Flags().Changed("jitter") {
				if set[fieldJitter], err = fleetconfig.Validate(fieldJitter, jitter); err != nil {
					return &exitError{exitUsage, "--jitter: " + err.Error() + "; nothing written"}
				}
			}
			ctx, c, kv, done, err := a.openKV(cmd, wire.BucketAgentConfig)
			if err != nil {
				return err
			}
			defer done()
			rows, err := listReleases(ctx, c.JS)
			if err != nil {
				return err
			}
			if err := a.checkRolloutVersion(version, rows); err != nil {
				return err
			}
			cur, err := readKey(ctx, kv, key)
			if err != nil {
				return err
			}
			if rolloutReadHook != nil {
				rolloutReadHook(key)
			}
			m, err := decodeScope(cur)
			if err != nil {
				return err
			}
			where := wire.BucketAgentConfig + "/" + key
			var lines []string
			changed := false
			for _, f := range []string{fieldTarget, fieldJitter} {
				raw, ok := set[f]
				if !ok {
					continue
				}
				old, had := m[f]
				if had && sameJSON(old, raw) {
					lines = append(lines, fmt.Sprintf("  %s: %s (unchanged)", f, showRaw(raw, true)))
					continue
				}
				m[f] = raw
				changed = true
				lines = append(lines, fmt.Sprintf("  %s: %s → %s", f, showRaw(old, had), showRaw(raw, true)))
			}
			fmt.Fprintf(a.out, "%s (%s):\n%s\n", where, reach, strings.Join(lines, "\n"))
			if !changed {
				fmt.Fprintf(a.out, "already set; nothing written (still revision %d)\n", cur.Revision)
				return a.noteOverrides(ctx, kv, key)
			}
			value, err := json.Marshal(m)
			if err != nil {
				return err
			}
			rev, err := casPut(ctx, kv, key, value, cur.Revision)
			if err != nil {
				return err
			}
			prev := "it did not exist"
			if cur.Revision > 0 {
				prev = fmt.Sprintf("was revision %d", cur.Revision)
			}
			jit := "its target_version_jitter (not set in this layer: from a less specific layer, or the default 10m)"
			if raw, ok := m[fieldJitter]; ok {
				var d string
				if json.Unmarshal(raw, &d) != nil {
					d = showRaw(raw, true)
				}
				jit = "the jitter " + d + " set in this layer"
			}
			fmt.Fprintf(a.out, "written: revision %d (%s)\n", rev, prev)
			fmt.Fprintf(a.out, "agents act within seconds: every agent in scope (%s) not already running %s updates after a random delay of up to %s; follow with kanade agent current and the agent_update events\n", reach, version, jit)
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
	have := map[string]releaseRow{}
	bad := map[string]string{}
	others := map[string][]string{} // other version → platforms
	all := map[string]bool{}
	for _, r := range rows {
		if r.Version == "" {
			continue
		}
		if r.Problem == "" || r.Version == version {
			all[r.platform()] = true
		}
		switch {
		case r.Version != version:
			if r.Problem == "" {
				others[r.Version] = append(others[r.Version], r.platform())
			}
		case r.Problem != "":
			bad[r.platform()] = r.Problem
		default:
			have[r.platform()] = r
		}
	}
	if len(have) == 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "version %s has no usable release in %s, so no agent could update to it; nothing written", version, wire.ObjectAgentReleases)
		for _, p := range slices.Sorted(maps.Keys(bad)) {
			fmt.Fprintf(&b, "\n  %s/%s: invalid record: %s", version, p, bad[p])
		}
		if len(others) == 0 {
			b.WriteString("\nno release is published at all: kanade agent publish <binary> first")
		} else {
			b.WriteString("\npublished versions:")
			for _, v := range slices.Sorted(maps.Keys(others)) {
				fmt.Fprintf(&b, "\n  %s (%s)", v, strings.Join(others[v], ", "))
			}
			fmt.Fprintf(&b, "\npublish %s for these platforms with kanade agent publish <binary> --version %s", version, version)
		}
		return &exitError{exitFailure, b.String()}
	}
	for _, p := range slices.Sorted(maps.Keys(all)) {
		if _, ok := have[p]; ok {
			continue
		}
		if msg, ok := bad[p]; ok {
			fmt.Fprintf(a.errOut, "kanade: warning: %s has no usable %s release (invalid record: %s): PCs on %s refuse it (agent_update_refused) and stay on their version until the target changes\n", version, p, msg, p)
			continue
		}
		fmt.Fprintf(a.errOut, "kanade: warning: %s has no usable %s release (not published): PCs on %s stay on their version and keep retrying until it is published\n", version, p, p)
	}
	for _, p := range slices.Sorted(maps.Keys(have)) {
		if !have[p].Signed {
			fmt.Fprintf(a.errOut, "kanade: warning: %s for %s is UNSIGNED: endpoints that trust a release key will refuse it\n", version, p)
		}
	}
	return nil
}

// rolloutClear removes target_version and target_version_jitter from one
// layer with compare-and-set.
func (a *app) rolloutClear(cmd *cobra.Command, key string) error {
	ctx, _, kv, done, err := a.openKV(cmd, wire.BucketAgentConfig)
	if err != nil {
		return err
	}
	defer done()
	cur, err := readKey(ctx, kv, key)
	if err != nil {
		return err
	}
	if rolloutReadHook != nil {
		rolloutReadHook(key)
	}
	where := wire.BucketAgentConfig + "/" + key
	if cur.Revision == 0 {
		fmt.Fprintf(a.out, "%s does not exist: no target_version to clear; nothing written\n", where)
		return nil
	}
	m, err := decodeScope(cur)
	if err != nil {
		return err
	}
	var lines []string
	for _, f := range []string{fieldTarget, fieldJitter} {
		if old, had := m[f]; had {
			delete(m, f)
			lines = append(lines, fmt.Sprintf("  %s: %s → (unset)", f, showRaw(old, true)))
		}
	}
	if len(lines) == 0 {
		fmt.Fprintf(a.out, "%s sets no target_version; nothing written (still revision %d)\n", where, cur.Revision)
		return nil
	}
	value, err := json.Marshal(m)
	if err != nil {
		return err
	}
	rev, err := casPut(ctx, kv, key, value, cur.Revision)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.out, "%s:\n%s\nwritten: revision %d (was revision %d)\nthe PCs of this layer now follow a less specific layer's target_version, if any (kanade agent current); without one they keep the version they run\n",
		where, strings.Join(lines, "\n"), rev, cur.Revision)
	return nil
}

// targetRow is one agent_config layer that sets target_version.
type targetRow struct {
	Scope    string `json:"scope"`
	Key      string `json:"key"`
	Target   string `json:"target_version,omitempty"`
	Jitter   string `json:"target_version_jitter,omitempty"`
	Revision uint64 `json:"revision"`
	// Problem: agents ignore this layer's target (why).
	Problem string `json:"problem,omitempty"`
}

// scopeOf names an agent_config key for display; ok is false for a key
// that is none of global, groups.<g>, pcs.<pc>.
func scopeOf(key string) (scope string, rank int, ok bool) {
	switch {
	case key == wire.ConfigKeyGlobal:
		return "global", 0, true
	case strings.HasPrefix(key, "groups."):
		return "group " + strings.TrimPrefix(key, "groups."), 1, true
	case strings.HasPrefix(key, "pcs."):
		return "pc " + strings.TrimPrefix(key, "pcs."), 2, true
	}
	return "", 0, false
}

// readTargets reads every layer of agent_config and returns those that set
// target_version (or try to, with a value agents ignore), global first,
// then groups, then PCs, each sorted.
func readTargets(ctx context.Context, kv jetstream.KeyValue) ([]targetRow, error) {
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", kv.Bucket(), err)
	}
	var keys []string
	for k := range lister.Keys() {
		if _, _, ok := scopeOf(k); ok {
			keys = append(keys, k)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("listing %s: %w", kv.Bucket(), err)
	}
	slices.SortFunc(keys, func(x, y string) int {
		_, rx, _ := scopeOf(x)
		_, ry, _ := scopeOf(y)
		if rx != ry {
			return rx - ry
		}
		return strings.Compare(x, y)
	})
	var rows []targetRow
	for _, k := range keys {
		v, err := readKey(ctx, kv, k)
		if err != nil {
			return nil, err
		}
		if v.Revision == 0 {
			continue // deleted since it was listed
		}
		scope, _, _ := scopeOf(k)
		row := targetRow{Scope: scope, Key: k, Revision: v.Revision}
		layer, err := fleetconfig.ParseLayer(scope, v.Value)
		if err != nil {
			if strings.Contains(string(v.Value), fieldTarget) {
				row.Problem = err.Error() + "; agents ignore the whole layer"
				rows = append(rows, row)
			}
			continue
		}
		raw, ok := layer.Fields[fieldTarget]
		if !ok {
			continue
		}
		var target string
		if json.Unmarshal(raw, &target) == nil {
			row.Target = target
		}
		if res := fleetconfig.Resolve(fleetconfig.Defaults(1), &layer, nil, nil); len(res.Problems) > 0 {
			for _, p := range res.Problems {
				if p.Field == fieldTarget || p.Field == fieldJitter {
					row.Problem = strings.TrimSuffix(p.Message, "; using the default") + "; agents ignore it"
				}
			}
		}
		if j, ok := layer.Fields[fieldJitter]; ok {
			var s string
			if json.Unmarshal(j, &s) == nil {
				row.Jitter = s
			} else {
				row.Jitter = showRaw(j, true)
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// noteOverrides tells which more specific layers set their own
// target_version, so a rollout does not reach their PCs.
func (a *app) noteOverrides(ctx context.Context, kv jetstream.KeyValue, key string) error {
	rows, err := readTargets(ctx, kv)
	if err != nil {
		return err
	}
	_, rank, _ := scopeOf(key)
	var over []string
	for _, r := range rows {
		_, rr, _ := scopeOf(r.Key)
		if r.Key == key || r.Problem != "" {
			continue
		}
		// A PC layer beats everything; a group beats global, and of two
		// groups the later in alphabetical order wins for PCs in both.
		if rr > rank || (rr == 1 && rank == 1 && r.Key > key) {
			over = append(over, fmt.Sprintf("%s → %s", r.Scope, r.Target))
		}
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
			rows, err := readTargets(ctx, kv)
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
