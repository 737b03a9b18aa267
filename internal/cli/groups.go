package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/kanade-project/kanade/internal/fleetconfig"
	"github.com/kanade-project/kanade/internal/wire"
)

// agentCmd is the parent of the commands that manage agents.
func (a *app) agentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Manage agents: groups, releases and rollout, NATS credentials",
	}
	cmd.AddCommand(a.agentGroupsCmd())
	cmd.AddCommand(a.agentPublishCmd(), a.agentReleasesCmd(), a.agentRolloutCmd(), a.agentCurrentCmd())
	cmd.AddCommand(a.enrollCmds()...)
	cmd.RunE = parentRunE
	return cmd
}

func (a *app) agentGroupsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "groups",
		Short: "Show and change the groups a PC belongs to",
		Long: `A PC's groups are stored in the KV bucket agent_groups under the PC's id, as
{"groups": [...]}, sorted and without duplicates. Groups select the config
layers a PC applies (agent_config groups.<g>, in alphabetical order: the last
wins) and the commands it receives (kanade run --group g). Agents watch the
bucket and apply a change within seconds.

Group names and PC ids may contain letters, digits, '-', '_' and '='.
Changes are idempotent (adding a group the PC is already in writes nothing)
and never overwrite a change someone else made since the groups were read.`,
		Example: `  kanade agent groups list pc-042
  kanade agent groups add pc-042 canary finance
  kanade agent groups rm pc-042 canary
  kanade agent groups set pc-042 finance
  kanade agent groups set pc-042          # no group`,
	}
	var output string
	list := &cobra.Command{
		Use:     "list <pc>",
		Short:   "Show the groups of a PC",
		Example: "  kanade agent groups list pc-042 -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pc := args[0]
			if err := fleetconfig.CheckKeyToken("pc", pc); err != nil {
				return &exitError{exitUsage, err.Error()}
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			_, _, cur, done, err := a.openKey(cmd, wire.BucketAgentGroups, pc)
			if err != nil {
				return err
			}
			defer done()
			return a.printGroups(cur, output)
		},
	}
	list.Flags().StringVarP(&output, "output", "o", "text", "text | json")

	add := &cobra.Command{
		Use:     "add <pc> <group>...",
		Short:   "Add a PC to groups",
		Example: "  kanade agent groups add pc-042 canary finance",
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.editGroups(cmd, args[0], args[1:], false, func(cur, names []string) ([]string, []string) {
				next := slices.Clone(cur)
				var notes []string
				for _, g := range names {
					if slices.Contains(cur, g) {
						notes = append(notes, fmt.Sprintf("already in %s", g))
						continue
					}
					next = append(next, g)
					notes = append(notes, fmt.Sprintf("added to %s", g))
				}
				return next, notes
			})
		},
	}
	rm := &cobra.Command{
		Use:     "rm <pc> <group>...",
		Aliases: []string{"remove"},
		Short:   "Remove a PC from groups",
		Example: "  kanade agent groups rm pc-042 canary",
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.editGroups(cmd, args[0], args[1:], false, func(cur, names []string) ([]string, []string) {
				var notes []string
				for _, g := range names {
					if slices.Contains(cur, g) {
						notes = append(notes, fmt.Sprintf("removed from %s", g))
					} else {
						notes = append(notes, fmt.Sprintf("not in %s", g))
					}
				}
				next := slices.DeleteFunc(slices.Clone(cur), func(g string) bool { return slices.Contains(names, g) })
				return next, notes
			})
		},
	}
	set := &cobra.Command{
		Use:   "set <pc> [group]...",
		Short: "Replace the groups of a PC (no group: the PC is in no group)",
		Example: `  kanade agent groups set pc-042 canary finance
  kanade agent groups set pc-042`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.editGroups(cmd, args[0], args[1:], true, func(_, names []string) ([]string, []string) {
				return names, nil
			})
		},
	}
	cmd.AddCommand(list, add, rm, set)
	cmd.RunE = parentRunE
	return cmd
}

// groupsView is the JSON output of `agent groups list`.
type groupsView struct {
	PC       string   `json:"pc"`
	Groups   []string `json:"groups"`
	Revision uint64   `json:"revision,omitempty"`
	Problems []string `json:"problems,omitempty"`
}

func (a *app) printGroups(cur kvValue, output string) error {
	view := groupsView{PC: cur.Key, Groups: []string{}, Revision: cur.Revision}
	if cur.Revision > 0 {
		groups, bad, err := fleetconfig.ParseGroups(cur.Value)
		if err != nil {
			view.Problems = append(view.Problems, err.Error()+"; the agent treats the PC as in no group")
		}
		view.Problems = append(view.Problems, bad...)
		if groups != nil {
			view.Groups = groups
		}
	}
	if output == "json" {
		enc := json.NewEncoder(a.out)
		enc.SetIndent("", "  ")
		return enc.Encode(view)
	}
	switch {
	case cur.Revision == 0:
		fmt.Fprintf(a.out, "%s is in no group (%s/%s does not exist)\n", cur.Key, wire.BucketAgentGroups, cur.Key)
	case len(view.Groups) == 0:
		fmt.Fprintf(a.out, "%s is in no group (revision %d)\n", cur.Key, cur.Revision)
	default:
		fmt.Fprintf(a.out, "%s (revision %d):\n", cur.Key, cur.Revision)
		for _, g := range view.Groups {
			fmt.Fprintf(a.out, "  %s\n", g)
		}
	}
	for _, p := range view.Problems {
		fmt.Fprintf(a.errOut, "kanade: warning: %s/%s: %s\n", wire.BucketAgentGroups, cur.Key, p)
	}
	return nil
}

// normalizeGroupArgs validates group names given on the command line: one
// invalid name is a usage error naming it.
func normalizeGroupArgs(names []string) ([]string, error) {
	groups, bad, err := fleetconfig.NormalizeGroups(names)
	if err != nil {
		return nil, &exitError{exitUsage, err.Error()}
	}
	if len(bad) > 0 {
		return nil, &exitError{exitUsage, strings.Join(bad, "\n") + "\nnothing written"}
	}
	if groups == nil {
		groups = []string{}
	}
	return groups, nil
}

// editGroups reads agent_groups/<pc>, computes the new group list with
// change (given the current valid groups and the requested names) and
// writes it with compare-and-set when it differs. replace marks `set`,
// which may overwrite a stored value that cannot be decoded.
func (a *app) editGroups(cmd *cobra.Command, pc string, names []string, replace bool, change func(cur, names []string) ([]string, []string)) error {
	if err := fleetconfig.CheckKeyToken("pc", pc); err != nil {
		return &exitError{exitUsage, err.Error()}
	}
	names, err := normalizeGroupArgs(names)
	if err != nil {
		return err
	}
	ctx, kv, cur, done, err := a.openKey(cmd, wire.BucketAgentGroups, pc)
	if err != nil {
		return err
	}
	defer done()
	where := wire.BucketAgentGroups + "/" + pc
	curGroups := []string{}
	undecodable := false
	if cur.Revision > 0 {
		groups, bad, err := fleetconfig.ParseGroups(cur.Value)
		if err != nil {
			if !replace {
				return &exitError{exitFailure, fmt.Sprintf("%s (revision %d) cannot be read: %v\nreplace it with `kanade agent groups set %s <group>...`", where, cur.Revision, err, pc)}
			}
			undecodable = true
		}
		for _, b := range bad {
			fmt.Fprintf(a.errOut, "kanade: warning: %s holds an unusable group, dropped if the groups are written: %s\n", where, b)
		}
		if groups != nil {
			curGroups = groups
		}
	}
	next, notes := change(curGroups, names)
	next, _, _ = fleetconfig.NormalizeGroups(next)
	if next == nil {
		next = []string{}
	}
	for _, n := range notes {
		fmt.Fprintf(a.out, "%s: %s\n", pc, n)
	}
	if !undecodable && slices.Equal(curGroups, next) {
		fmt.Fprintf(a.out, "%s: groups unchanged (%s); nothing written\n", pc, groupList(next))
		return nil
	}
	rev, err := writeGroups(ctx, kv, pc, next, cur.Revision)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.out, "%s: groups %s → %s; written: revision %d\n", pc, groupList(curGroups), groupList(next), rev)
	return nil
}

// writeGroups stores the sorted groups of pc with compare-and-set against rev.
func writeGroups(ctx context.Context, kv jetstream.KeyValue, pc string, groups []string, rev uint64) (uint64, error) {
	value, err := json.Marshal(wire.AgentGroups{Groups: groups})
	if err != nil {
		return 0, err
	}
	return casPut(ctx, kv, pc, value, rev)
}

func groupList(groups []string) string {
	if len(groups) == 0 {
		return "(none)"
	}
	return strings.Join(groups, ", ")
}
