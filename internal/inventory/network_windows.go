//go:build windows

package inventory

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"unsafe"

	"golang.org/x/sys/windows"

	"github.com/kanade-project/kanade/internal/wire"
)

// Network lists every adapter (none skipped, as on Linux) with its
// addresses in CIDR form, the default gateways and the DNS servers, all
// from one GetAdaptersAddresses call (no WMI).
func (c *windowsCollector) Network(ctx context.Context) wire.Network {
	var n wire.Network
	if ctx.Err() != nil {
		n.Notes = append(n.Notes, "network: collection stopped early: "+context.Cause(ctx).Error())
		return n
	}
	adapters, err := adapterAddresses()
	if err != nil {
		n.Notes = append(n.Notes, "GetAdaptersAddresses: "+err.Error())
		return n
	}
	var gateways []netip.Addr
	type dnsList struct {
		adapter string
		servers []netip.Addr
	}
	var dns []dnsList
	for _, a := range adapters {
		name := windows.UTF16PtrToString(a.FriendlyName)
		wi := wire.Interface{Name: name, Up: a.OperStatus == windows.IfOperStatusUp}
		if a.PhysicalAddressLength > 0 && int(a.PhysicalAddressLength) <= len(a.PhysicalAddress) {
			wi.MAC = net.HardwareAddr(a.PhysicalAddress[:a.PhysicalAddressLength]).String()
		}
		var v4, v6 []netip.Prefix
		for u := a.FirstUnicastAddress; u != nil; u = u.Next {
			ip, ok := sockaddrAddr(&u.Address, "")
			if !ok {
				continue
			}
			p := netip.PrefixFrom(ip, int(u.OnLinkPrefixLength))
			if !p.IsValid() { // no usable prefix length: a host address
				p = netip.PrefixFrom(ip, ip.BitLen())
			}
			if ip.Is4() {
				v4 = append(v4, p)
			} else {
				v6 = append(v6, p)
			}
		}
		wi.IPv4 = prefixStrings(v4)
		wi.IPv6 = prefixStrings(v6)
		n.Interfaces = append(n.Interfaces, wi)

		if !wi.Up {
			continue // a disconnected adapter's gateway or DNS is not in use
		}
		for g := a.FirstGatewayAddress; g != nil; g = g.Next {
			if ip, ok := sockaddrAddr(&g.Address, name); ok && !ip.IsUnspecified() {
				gateways = append(gateways, ip)
			}
		}
		var servers []netip.Addr
		for d := a.FirstDnsServerAddress; d != nil; d = d.Next {
			ip, ok := sockaddrAddr(&d.Address, "")
			if !ok || isDeprecatedSiteLocalDNS(ip) {
				continue
			}
			servers = append(servers, ip)
		}
		dns = append(dns, dnsList{name, servers})
	}
	slices.SortFunc(n.Interfaces, func(a, b wire.Interface) int { return strings.Compare(a.Name, b.Name) })

	slices.SortFunc(gateways, func(a, b netip.Addr) int { return a.Compare(b) })
	for _, g := range slices.Compact(gateways) {
		n.DefaultGateways = append(n.DefaultGateways, g.String())
	}
	// DNS servers: adapters by name, each adapter's servers in its own
	// (resolver) order, duplicates once.
	slices.SortFunc(dns, func(a, b dnsList) int { return strings.Compare(a.adapter, b.adapter) })
	for _, d := range dns {
		for _, s := range d.servers {
			if str := s.String(); !slices.Contains(n.DNSServers, str) {
				n.DNSServers = append(n.DNSServers, str)
			}
		}
	}
	return n
}

// adapterAddresses calls GetAdaptersAddresses, growing the buffer as told.
func adapterAddresses() ([]*windows.IpAdapterAddresses, error) {
	const flags = windows.GAA_FLAG_INCLUDE_GATEWAYS | windows.GAA_FLAG_SKIP_ANYCAST | windows.GAA_FLAG_SKIP_MULTICAST
	size := uint32(16 << 10)
	for range 4 {
		buf := make([]byte, size)
		first := (*windows.IpAdapterAddresses)(unsafe.Pointer(&buf[0]))
		err := windows.GetAdaptersAddresses(windows.AF_UNSPEC, flags, 0, first, &size)
		if err == windows.ERROR_BUFFER_OVERFLOW {
			continue // size now holds what is needed
		}
		if err == windows.ERROR_NO_DATA {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		var out []*windows.IpAdapterAddresses
		for a := first; a != nil; a = a.Next {
			out = append(out, a)
		}
		return out, nil
	}
	return nil, windows.ERROR_BUFFER_OVERFLOW
}

// sockaddrAddr converts a SOCKET_ADDRESS; zone names the adapter of an
// IPv6 link-local address (a gateway fe80::1 means nothing without it).
func sockaddrAddr(sa *windows.SocketAddress, zone string) (netip.Addr, bool) {
	if sa.Sockaddr == nil {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(sa.IP())
	if !ok {
		return netip.Addr{}, false
	}
	ip = ip.Unmap()
	if zone != "" && ip.Is6() && ip.IsLinkLocalUnicast() {
		ip = ip.WithZone(zone)
	}
	return ip, true
}

// isDeprecatedSiteLocalDNS: Windows lists fec0:0:0:ffff::1, ::2 and ::3
// (the withdrawn site-local DNS defaults) on adapters that have no IPv6
// DNS server; they are not servers anyone configured.
func isDeprecatedSiteLocalDNS(ip netip.Addr) bool {
	p := netip.MustParsePrefix("fec0:0:0:ffff::/64")
	return p.Contains(ip.WithZone(""))
}
