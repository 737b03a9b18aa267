package inventory

import (
	"net/netip"
	"slices"
)

// prefixStrings renders interface addresses as CIDR strings, sorted by
// address then prefix length, so two collections of an unchanged host are
// byte for byte equal (the publisher hashes them).
func prefixStrings(ps []netip.Prefix) []string {
	if len(ps) == 0 {
		return nil
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}
