package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/wire"
)

func (a *app) inventoryCmd() *cobra.Command {
	inv := &cobra.Command{
		Use:   "inventory",
		Short: "Show and refresh the hardware, OS, network and software inventory of PCs",
	}
	var section, output string
	show := &cobra.Command{
		Use:   "show <pc>",
		Short: "Show the latest inventory a PC published (from stream INVENTORY)",
		Long: `Show the newest full copy of each inventory section of a PC, read from the
INVENTORY stream: hw (hardware), os, net (network) and sw (software). Agents
send a section in full only when it changed; in between they send a small
"unchanged" marker, shown here as the time the section was last confirmed.`,
		Example: `  kanade inventory show pc-042
  kanade inventory show pc-042 --section sw -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pc := args[0]
			if err := wire.CheckToken("pc", pc); err != nil {
				return &exitError{exitUsage, err.Error()}
			}
			sections := wire.Sections()
			if section != "" {
				if !slices.Contains(sections, section) {
					return &exitError{exitUsage, fmt.Sprintf("--section %q: expected one of %s", section, strings.Join(sections, ", "))}
				}
				sections = []string{section}
			}
			if output != "text" && output != "json" {
				return &exitError{exitUsage, fmt.Sprintf("--output %q: expected text or json", output)}
			}
			c, closeConn, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			latest, err := latestInventory(ctx, c, pc, sections)
			if err != nil {
				return err
			}
			if len(latest) == 0 {
				return &exitError{exitFailure, fmt.Sprintf("no inventory from %s yet (the agent sends it within inventory_jitter of starting; `kanade inventory refresh %s` asks for it now)", pc, pc)}
			}
			if output == "json" {
				out := map[string]any{}
				for _, s := range sections {
					if l, ok := latest[s]; ok {
						out[s] = map[string]any{"collected_at": l.full.CollectedAt, "confirmed_at": l.confirmed, "hash": l.full.Hash, "data": l.full.Data}
					}
				}
				enc := json.NewEncoder(a.out)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			for _, s := range sections {
				l, ok := latest[s]
				if !ok {
					fmt.Fprintf(a.out, "== %s: not published yet\n\n", s)
					continue
				}
				fmt.Fprintf(a.out, "== %s (collected %s, last confirmed unchanged %s)\n", s, l.full.CollectedAt.Format(time.RFC3339), l.confirmed.Format(time.RFC3339))
				a.printSection(s, l.full.Data)
				fmt.Fprintln(a.out)
			}
			return nil
		},
	}
	show.Flags().StringVar(&section, "section", "", "only this section: hw, os, net or sw")
	show.Flags().StringVarP(&output, "output", "o", "text", "text | json")

	var all bool
	refresh := &cobra.Command{
		Use:     "refresh (<pc> | --all)",
		Short:   "Ask a PC (or every connected PC) to collect and publish its inventory now",
		Example: "  kanade inventory refresh pc-042\n  kanade inventory refresh --all",
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) == 1) || len(args) > 1 {
				return &exitError{exitUsage, "give one PC or --all"}
			}
			c, closeConn, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer closeConn()
			if !all {
				if err := wire.CheckToken("pc", args[0]); err != nil {
					return &exitError{exitUsage, err.Error()}
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
				defer cancel()
				if _, err := c.NC.RequestWithContext(ctx, wire.SubjectInventoryRefresh(args[0]), nil); err != nil {
					if err == nats.ErrNoResponders {
						return &exitError{exitNoAnswer, fmt.Sprintf("no agent %q is connected", args[0])}
					}
					return err
				}
				fmt.Fprintf(a.out, "%s is collecting its inventory\n", args[0])
				return nil
			}
			n, err := collectAnswers(cmd.Context(), c, wire.SubjectInventoryRefreshAll, 2*time.Second)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "%d agents are collecting their inventory\n", n)
			return nil
		},
	}
	refresh.Flags().BoolVar(&all, "all", false, "every connected agent")
	inv.AddCommand(show, refresh)
	return inv
}

// collectAnswers publishes a request to every agent and counts replies.
func collectAnswers(ctx context.Context, c *fleetclient.Client, subject string, window time.Duration) (int, error) {
	inbox := c.NC.NewRespInbox()
	ch := make(chan *nats.Msg, 4096)
	sub, err := c.NC.ChanSubscribe(inbox, ch)
	if err != nil {
		return 0, err
	}
	defer sub.Unsubscribe()
	if err := c.NC.PublishRequest(subject, inbox, nil); err != nil {
		return 0, err
	}
	t := time.NewTimer(window)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return n, nil
		case <-t.C:
			return n, nil
		case <-ch:
			n++
		}
	}
}

type latestSection struct {
	full      wire.InventoryMessage
	confirmed time.Time
}

// latestInventory scans the PC's inventory subjects for the newest full
// copy of each section and the newest confirmation of it.
func latestInventory(ctx context.Context, c *fleetclient.Client, pc string, sections []string) (map[string]latestSection, error) {
	s, err := c.JS.Stream(ctx, wire.StreamInventory)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w (run `kanade jetstream setup`)", wire.StreamInventory, err)
	}
	var filters []string
	for _, sec := range sections {
		filters = append(filters, wire.SubjectInventory(pc, sec))
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: filters})
	if err != nil {
		return nil, err
	}
	out := map[string]latestSection{}
	for {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var im wire.InventoryMessage
			if json.Unmarshal(m.Data(), &im) != nil {
				continue
			}
			l := out[im.Section]
			if !im.Unchanged && len(im.Data) > 0 {
				l.full = im
				l.confirmed = im.CollectedAt
			} else if im.Hash == l.full.Hash {
				l.confirmed = im.CollectedAt
			}
			if l.full.Hash != "" {
				out[im.Section] = l
			}
		}
		if n == 0 {
			return out, nil
		}
	}
}

func (a *app) printSection(section string, data json.RawMessage) {
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	switch section {
	case wire.SectionHardware:
		var h wire.Hardware
		_ = json.Unmarshal(data, &h)
		fmt.Fprintf(tw, "manufacturer\t%s\nmodel\t%s\nserial\t%s\nsmbios uuid\t%s\n", h.Manufacturer, h.Model, h.Serial, h.SMBIOSUUID)
		fmt.Fprintf(tw, "cpu\t%s (%d sockets, %d cores, %d logical)\nram\t%s\nbios\t%s %s %s\n", h.CPU.Model, h.CPU.Sockets, h.CPU.Cores, h.CPU.LogicalProcessors, bytesHuman(int64(h.RAMBytes)), h.BIOS.Vendor, h.BIOS.Version, h.BIOS.ReleaseDate)
		for _, d := range h.Disks {
			fmt.Fprintf(tw, "disk %s\t%s %s, %s free of %s\n", d.ID, d.Mount, d.FileSystem, bytesHuman(int64(d.FreeBytes)), bytesHuman(int64(d.SizeBytes)))
		}
		for _, n := range h.Notes {
			fmt.Fprintf(tw, "note\t%s\n", n)
		}
	case wire.SectionOS:
		var o wire.OSInfo
		_ = json.Unmarshal(data, &o)
		fmt.Fprintf(tw, "name\t%s\nversion\t%s\nbuild\t%s\nkernel\t%s\ntime zone\t%s\ndomain\t%s\nworkgroup\t%s\n", o.Name, o.Version, o.Build, o.Kernel, o.TimeZone, o.Domain, o.Workgroup)
		if o.LastBoot != nil {
			fmt.Fprintf(tw, "last boot\t%s\n", o.LastBoot.Format(time.RFC3339))
		}
		if o.InstallDate != nil {
			fmt.Fprintf(tw, "installed\t%s\n", o.InstallDate.Format(time.RFC3339))
		}
		for _, n := range o.Notes {
			fmt.Fprintf(tw, "note\t%s\n", n)
		}
	case wire.SectionNetwork:
		var n wire.Network
		_ = json.Unmarshal(data, &n)
		for _, i := range n.Interfaces {
			state := "down"
			if i.Up {
				state = "up"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", i.Name, state, i.MAC, strings.Join(append(append([]string{}, i.IPv4...), i.IPv6...), " "))
		}
		fmt.Fprintf(tw, "gateways\t%s\ndns\t%s\n", strings.Join(n.DefaultGateways, " "), strings.Join(n.DNSServers, " "))
	case wire.SectionSoftware:
		var s wire.Software
		_ = json.Unmarshal(data, &s)
		fmt.Fprintf(tw, "NAME\tVERSION\tPUBLISHER\tSOURCE\n")
		for _, p := range s.Programs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, p.Version, p.Publisher, p.Source)
		}
		for _, h := range s.Hotfixes {
			fmt.Fprintf(tw, "%s\t%s\t%s\thotfix\n", h.ID, h.InstalledOn, h.Description)
		}
		fmt.Fprintf(tw, "(%d programs, %d hotfixes)\n", len(s.Programs), len(s.Hotfixes))
	}
}
