package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/kanade-project/kanade/internal/wire"
)

// stopCmds are the operator's stop-the-bleed commands: kill a running
// execution everywhere, revoke a job so no agent starts it again.
func (a *app) stopCmds() []*cobra.Command {
	kill := &cobra.Command{
		Use:   "kill <exec_id>",
		Short: "Kill an execution on every PC running it (whole process tree, never retried)",
		Long: `Kill an execution on every PC that runs it. Each agent ends the whole process
tree of the run, also while it waits for its jitter, for a run slot or between
retries, and reports exit code -1 with the reason in stderr. A killed run is
never retried. The exec_id is printed by "kanade run" and shown in results.`,
		Example: "  kanade kill 3MvC1k7QeT2bQ4xqzD0Hn1",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := wire.CheckToken("exec_id", args[0]); err != nil {
				return &exitError{exitUsage, err.Error()}
			}
			c, closeConn, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer closeConn()
			if err := c.NC.Publish(wire.SubjectKill(args[0]), nil); err != nil {
				return err
			}
			if err := c.NC.FlushTimeout(5 * time.Second); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "kill sent for %s\n", args[0])
			return nil
		},
	}
	status := func(use, short, long, value string) *cobra.Command {
		return &cobra.Command{
			Use:   use + " <job>",
			Short: short,
			Long:  long,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				job := args[0]
				if err := wire.CheckToken("job", job); err != nil {
					return &exitError{exitUsage, err.Error()}
				}
				c, closeConn, err := a.connect(cmd.Context())
				if err != nil {
					return err
				}
				defer closeConn()
				ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
				defer cancel()
				kv, err := c.JS.KeyValue(ctx, wire.BucketScriptStatus)
				if err != nil {
					return fmt.Errorf("bucket %s: %w (run `kanade jetstream setup`)", wire.BucketScriptStatus, err)
				}
				if _, err := kv.Put(ctx, job, []byte(value)); err != nil {
					return err
				}
				fmt.Fprintf(a.out, "%s is now %s\n", job, value)
				return nil
			},
		}
	}
	revoke := status("revoke", "Revoke a job: agents refuse to start it (exit 126)",
		`Mark a job REVOKED in script_status. Every agent checks this right before it
starts a command of that job, and answers with exit code 126 (skipped)
instead. Runs already in progress are not touched: use "kanade kill" too.`, wire.ScriptRevoked)
	unrevoke := status("unrevoke", "Allow a revoked job to run again",
		`Mark a job ACTIVE again in script_status.`, wire.ScriptActive)
	return []*cobra.Command{kill, revoke, unrevoke}
}
