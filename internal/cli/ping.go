package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) pingCmd() *cobra.Command {
	var timeout time.Duration
	var output string
	cmd := &cobra.Command{
		Use:     "ping <pc>",
		Short:   "Ask one agent for a fresh heartbeat",
		Example: "  kanade ping pc-042",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, closeConn, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			start := time.Now()
			hb, err := c.Ping(ctx, args[0])
			if err != nil {
				return &exitError{exitNoAnswer, fmt.Sprintf("ping %s: %v", args[0], err)}
			}
			rtt := time.Since(start)
			if output == "json" {
				enc := json.NewEncoder(a.out)
				enc.SetIndent("", "  ")
				return enc.Encode(hb)
			}
			fmt.Fprintf(a.out, "%s answered in %s: version %s, %s/%s, host %s, rss %.1f MiB\n",
				hb.PCID, rtt.Round(time.Microsecond), hb.AgentVersion, hb.OSFamily, hb.Arch, hb.Hostname, float64(hb.AgentRSSBytes)/(1<<20))
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for the answer")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text | json")
	return cmd
}
