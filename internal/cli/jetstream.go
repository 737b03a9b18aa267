package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kanade-project/kanade/internal/bootstrap"
)

func (a *app) jetstreamCmd() *cobra.Command {
	js := &cobra.Command{
		Use:   "jetstream",
		Short: "Create and inspect kanade's JetStream streams, KV buckets and object stores",
	}
	var replicas int
	setup := &cobra.Command{
		Use:   "setup",
		Short: "Create missing resources and reconcile limits (safe to run any time)",
		Long: `Create every stream, KV bucket and object store kanade needs, and put back
the managed limits (size caps, max age, consumer caps) of existing ones.
Data is never deleted. Running it twice changes nothing.

Replicas change only when --replicas is given: then every resource is
reconciled to that count. Without it, existing resources keep their count
(a run against an R3 cluster never scales it down) and missing ones are
created with the highest count among the existing ones, 1 when none exist.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Options.Replicas 0 keeps every resource's count: only an
			// explicit flag may scale anything, up or down.
			o := bootstrap.Options{}
			if cmd.Flags().Changed("replicas") {
				if replicas < 1 {
					return fmt.Errorf("--replicas %d: expected 1 or more (3 on a 3-node cluster)", replicas)
				}
				o.Replicas = replicas
			}
			c, closeConn, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			if o.Replicas > 0 {
				fmt.Fprintf(a.out, "replicas: reconciling every resource to %d\n", o.Replicas)
			} else {
				fmt.Fprintln(a.out, "replicas: kept as they are (--replicas N changes them)")
			}
			changes, err := bootstrap.Setup(ctx, c.JS, o)
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KIND\tNAME\tACTION\tFIELDS\tREPLICAS")
			for _, ch := range changes {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%d\n", ch.Resource.Kind, ch.Resource.Name, ch.Action, joinOrDash(ch.Fields), ch.Replicas)
			}
			tw.Flush()
			return err
		},
	}
	setup.Flags().IntVar(&replicas, "replicas", 0, "reconcile every resource to this many replicas (3 on a 3-node cluster); not given: existing resources keep theirs")
	status := &cobra.Command{
		Use:   "status",
		Short: "Show messages, bytes and limits of every resource",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Options.Replicas 0 keeps every resource's count: only an
			// explicit flag may scale anything, up or down.
			o := bootstrap.Options{}
			if cmd.Flags().Changed("replicas") {
				if replicas < 1 {
					return fmt.Errorf("--replicas %d: expected 1 or more (3 on a 3-node cluster)", replicas)
				}
				o.Replicas = replicas
			}
			c, closeConn, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			st, err := bootstrap.Inspect(ctx, c.JS)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KIND\tNAME\tMESSAGES\tBYTES\tKEYS\tMAX BYTES\tMAX AGE\tPER SUBJECT\tCONSUMERS\tREPLICAS\t")
			missing := 0
			for _, s := range st {
				if s.Missing {
					missing++
					fmt.Fprintf(tw, "%s\t%s\tmissing\t\t\t\t\t\t\t\t\n", s.Resource.Kind, s.Resource.Name)
					continue
				}
				keys := "-"
				if s.Resource.Kind != bootstrap.KindStream {
					keys = fmt.Sprint(s.Keys)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d/%s\t%d\t\n", s.Resource.Kind, s.Resource.Name,
					s.Messages, bytesHuman(int64(s.Bytes)), keys, bytesHuman(s.MaxBytes), ageHuman(s.MaxAge),
					limitHuman(s.MaxMsgsPerSubject), s.Consumers, limitHuman(int64(s.MaxConsumers)), s.Replicas)
			}
			tw.Flush()
			if missing > 0 {
				return &exitError{exitFailure, fmt.Sprintf("%d resource(s) missing: run `kanade jetstream setup`", missing)}
			}
			return nil
		},
	}
	js.AddCommand(setup, status)
	return js
}

func joinOrDash(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return fmt.Sprint(s)
}

func bytesHuman(n int64) string {
	switch {
	case n < 0:
		return "unlimited"
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

func ageHuman(d time.Duration) string {
	if d <= 0 {
		return "forever"
	}
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

func limitHuman(n int64) string {
	if n <= 0 {
		return "-"
	}
	return fmt.Sprint(n)
}
