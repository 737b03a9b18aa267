package inventory

import (
	"strings"

	"github.com/kanade-project/kanade/internal/wire"
)

// rpmQueryFormat is passed to rpm -qa --queryformat: one tab-separated
// line per package (rpm expands the \t and \n escapes itself). The epoch is
// not shown, as rpm -q does not show it.
const rpmQueryFormat = `%{NAME}\t%{VERSION}-%{RELEASE}\t%{VENDOR}\t%{ARCH}\n`

// rpmRecord is one line of rpmQueryFormat output.
type rpmRecord struct {
	Name, Version, Vendor, Arch string
}

// parseRPMQuery parses rpmQueryFormat output. "(none)" (rpm's empty tag)
// becomes "". gpg-pubkey entries are the imported signing keys that rpm
// keeps as pseudo-packages, not software: dropped. It returns the number
// of malformed lines alongside.
func parseRPMQuery(out string) (recs []rpmRecord, bad int) {
	for line := range strings.Lines(out) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 4 || f[0] == "" {
			bad++
			continue
		}
		for i := range f {
			if f[i] == "(none)" {
				f[i] = ""
			}
		}
		if f[0] == "gpg-pubkey" {
			continue
		}
		recs = append(recs, rpmRecord{Name: f[0], Version: f[1], Vendor: f[2], Arch: f[3]})
	}
	return recs, bad
}

// rpmPrograms names packages like dpkgPrograms does, in rpm's spelling:
// "name.arch" only when the name is installed for two or more
// architectures (multilib x86_64 + i686). Several versions of one name and
// arch (kernels) stay separate entries. The result is unsorted.
func rpmPrograms(recs []rpmRecord) []wire.Program {
	archs := map[string]map[string]bool{}
	for _, r := range recs {
		if archs[r.Name] == nil {
			archs[r.Name] = map[string]bool{}
		}
		archs[r.Name][r.Arch] = true
	}
	out := make([]wire.Program, 0, len(recs))
	for _, r := range recs {
		name := r.Name
		if len(archs[r.Name]) > 1 {
			name += "." + r.Arch
		}
		out = append(out, wire.Program{Name: name, Version: r.Version, Publisher: r.Vendor, Source: "rpm"})
	}
	return out
}
