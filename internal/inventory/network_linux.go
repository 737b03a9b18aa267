//go:build linux

package inventory

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/kanade-project/kanade/internal/wire"
)

// Network lists the interfaces of the LIVE kernel (net.Interfaces: Root
// does not apply), the default gateways from /proc/net/route and
// /proc/net/ipv6_route and the DNS servers of /etc/resolv.conf.
func (c *linuxCollector) Network(ctx context.Context) wire.Network {
	var n wire.Network
	if ctx.Err() != nil {
		n.Notes = append(n.Notes, cancelNote(ctx, "network"))
		return n
	}
	ifs, err := c.interfaces()
	if err != nil {
		n.Notes = append(n.Notes, "interfaces: "+err.Error())
	}
	slices.SortFunc(ifs, func(a, b wire.Interface) int { return strings.Compare(a.Name, b.Name) })
	n.Interfaces = ifs

	if ctx.Err() != nil {
		n.Notes = append(n.Notes, cancelNote(ctx, "network"))
		return n
	}
	n.DefaultGateways, n.Notes = c.gateways(n.Notes)
	n.DNSServers, n.Notes = c.dnsServers(n.Notes)
	return n
}

// liveInterfaces reads every interface (none skipped) with its addresses
// in CIDR form, sorted numerically within each family.
func liveInterfaces() ([]wire.Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	out := make([]wire.Interface, 0, len(ifs))
	var errs []string
	for _, ifc := range ifs {
		wi := wire.Interface{
			Name: ifc.Name,
			MAC:  ifc.HardwareAddr.String(), // empty for loopback and tunnels
			Up:   ifc.Flags&net.FlagUp != 0,
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			errs = append(errs, ifc.Name+": "+err.Error())
		}
		var v4, v6 []netip.Prefix
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ones, _ := ipn.Mask.Size()
			if ip.Is4In6() || ip.Is4() {
				v4 = append(v4, netip.PrefixFrom(ip.Unmap(), ones))
			} else {
				v6 = append(v6, netip.PrefixFrom(ip, ones))
			}
		}
		wi.IPv4 = prefixStrings(v4)
		wi.IPv6 = prefixStrings(v6)
		out = append(out, wi)
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("addresses: %s", strings.Join(errs, "; "))
	}
	return out, nil
}

// Route flags of include/uapi/linux/route.h and ipv6_route.h.
const (
	rtfUp      = 0x0001
	rtfGateway = 0x0002
	rtfReject  = 0x0200
)

// parseRoute4 returns the gateways of the default routes in /proc/net/route
// (destination and mask 0, RTF_UP|RTF_GATEWAY; the gateway is the
// network-order address printed as a host-order hex word, so 192.0.2.1
// reads 010200C0 on little-endian machines).
func parseRoute4(data string) []netip.Addr {
	var out []netip.Addr
	for line := range strings.Lines(data) {
		f := strings.Fields(line)
		if len(f) < 8 || f[0] == "Iface" {
			continue
		}
		if f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		flags, err := strconv.ParseUint(f[3], 16, 32)
		if err != nil || flags&(rtfUp|rtfGateway) != rtfUp|rtfGateway || flags&rtfReject != 0 {
			continue
		}
		gw, err := strconv.ParseUint(f[2], 16, 32)
		if err != nil {
			continue
		}
		// The kernel prints the network-order word as a host integer.
		var a [4]byte
		binary.NativeEndian.PutUint32(a[:], uint32(gw))
		if ip := netip.AddrFrom4(a); !ip.IsUnspecified() {
			out = append(out, ip)
		}
	}
	return out
}

// parseRoute6 returns the next hops of the default routes (::/0) in
// /proc/net/ipv6_route, skipping reject routes and routes without a next
// hop. A link-local next hop carries its interface as the zone.
func parseRoute6(data string) []netip.Addr {
	var out []netip.Addr
	for line := range strings.Lines(data) {
		// dest plen src plen nexthop metric refcnt use flags dev
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		if f[0] != strings.Repeat("0", 32) || f[1] != "00" {
			continue
		}
		flags, err := strconv.ParseUint(f[8], 16, 32)
		if err != nil || flags&rtfUp == 0 || flags&rtfReject != 0 {
			continue
		}
		b, err := hex.DecodeString(f[4])
		if err != nil || len(b) != 16 {
			continue
		}
		ip := netip.AddrFrom16([16]byte(b))
		if ip.IsUnspecified() {
			continue
		}
		if ip.IsLinkLocalUnicast() {
			ip = ip.WithZone(f[9])
		}
		out = append(out, ip)
	}
	return out
}

func (c *linuxCollector) gateways(notes []string) ([]string, []string) {
	var all []netip.Addr
	if data, err := c.readSmall("/proc/net/route"); err != nil {
		notes = append(notes, fileNote("/proc/net/route", err))
	} else {
		all = append(all, parseRoute4(data)...)
	}
	if data, err := c.readSmall("/proc/net/ipv6_route"); err != nil {
		notes = append(notes, fileNote("/proc/net/ipv6_route", err))
	} else {
		all = append(all, parseRoute6(data)...)
	}
	// IPv4 before IPv6, numeric within a family; duplicates (the same
	// router over two interfaces or metrics) once.
	slices.SortFunc(all, func(a, b netip.Addr) int { return a.Compare(b) })
	all = slices.Compact(all)
	if len(all) == 0 {
		return nil, notes
	}
	out := make([]string, len(all))
	for i, a := range all {
		out[i] = a.String()
	}
	return out, notes
}

// parseResolvConf returns the nameserver addresses in file order (the
// resolver's order: primary first), without duplicates.
func parseResolvConf(data string) []string {
	var out []string
	for line := range strings.Lines(data) {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		if !slices.Contains(out, f[1]) {
			out = append(out, f[1])
		}
	}
	return out
}

// systemd-resolved's stub listener: the servers it forwards to are in
// /run/systemd/resolve/resolv.conf.
const (
	resolvedStub     = "127.0.0.53"
	resolvedUpstream = "/run/systemd/resolve/resolv.conf"
)

func (c *linuxCollector) dnsServers(notes []string) ([]string, []string) {
	const p = "/etc/resolv.conf"
	data, err := c.readSmall(p)
	if err != nil {
		return nil, append(notes, fileNote(p, err))
	}
	servers := parseResolvConf(data)
	if len(servers) == 1 && servers[0] == resolvedStub {
		if up, err := c.readSmall(resolvedUpstream); err == nil {
			if ups := parseResolvConf(up); len(ups) > 0 {
				return ups, append(notes, "DNS: "+p+" points at the systemd-resolved stub "+resolvedStub+"; servers from "+resolvedUpstream)
			}
		}
	}
	return servers, notes
}
