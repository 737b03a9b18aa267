package inventory

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/kanade-project/kanade/internal/wire"
)

// dpkgRecord is one stanza of the dpkg status database (status file or a
// journal file of updates/), reduced to what the inventory reports.
type dpkgRecord struct {
	Package      string
	Version      string
	Architecture string
	Maintainer   string
	// Status is "want eflag status", e.g. "install ok installed".
	Status string
}

// installed reports whether the package is on disk and configured: error
// flag "ok" and status installed, triggers-pending or triggers-awaited
// (configured, a trigger still to run). The want flag (install, hold,
// deinstall, purge) is a selection, not a state: a held package is
// installed. In dpkg-query's ${db:Status-Abbrev}: [any]{i,t,W}<space>.
// Not installed: not-installed, config-files, half-installed, unpacked,
// half-configured, and anything flagged reinst-required.
func (r dpkgRecord) installed() bool {
	f := strings.Fields(r.Status)
	if len(f) != 3 || f[1] != "ok" {
		return false
	}
	switch f[2] {
	case "installed", "triggers-pending", "triggers-awaited":
		return true
	}
	return false
}

// maxControlLine bounds one line of the database; dpkg writes none near it.
const maxControlLine = 4 << 20

// parseDpkgStatus parses deb822 stanzas (fields "Name: value", case-
// insensitive names; continuation lines start with a space or a tab and
// are skipped: none of the fields read here spans lines; stanzas end at a
// blank line). Stanzas without a Package field are dropped. It checks ctx
// every 256 stanzas and returns what it has with ctx's error when ctx ends.
func parseDpkgStatus(ctx context.Context, r io.Reader) ([]dpkgRecord, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxControlLine)
	// Maintainer, Architecture and Status repeat across hundreds of
	// packages: keep one copy of each.
	intern := map[string]string{}
	internB := func(b []byte) string {
		if s, ok := intern[string(b)]; ok {
			return s
		}
		s := string(b)
		intern[s] = s
		return s
	}

	var (
		out    []dpkgRecord
		cur    dpkgRecord
		inPara bool
		paras  int
	)
	end := func() {
		if inPara {
			paras++
			if cur.Package != "" {
				out = append(out, cur)
			}
		}
		cur, inPara = dpkgRecord{}, false
	}
	for sc.Scan() {
		line := bytes.TrimRight(sc.Bytes(), "\r")
		if len(bytes.TrimSpace(line)) == 0 {
			end()
			if paras%256 == 0 && ctx.Err() != nil {
				return out, context.Cause(ctx)
			}
			continue
		}
		if line[0] == ' ' || line[0] == '\t' || line[0] == '#' {
			continue // continuation (Description, Conffiles, …) or comment
		}
		inPara = true
		i := bytes.IndexByte(line, ':')
		if i <= 0 {
			continue
		}
		name, val := line[:i], bytes.TrimSpace(line[i+1:])
		switch {
		case dpkgFieldIs(name, "Package"):
			cur.Package = string(val)
		case dpkgFieldIs(name, "Version"):
			cur.Version = string(val)
		case dpkgFieldIs(name, "Architecture"):
			cur.Architecture = internB(val)
		case dpkgFieldIs(name, "Maintainer"):
			cur.Maintainer = internB(val)
		case dpkgFieldIs(name, "Status"):
			cur.Status = internB(val)
		}
	}
	end()
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("line %d bytes or more: %w", maxControlLine, err)
	}
	return out, ctx.Err()
}

func dpkgFieldIs(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// dpkgPrograms turns records, in database order (the status file, then the
// journal files of updates/ in order), into programs: a later record for
// the same package and architecture replaces the earlier one, as dpkg
// itself reads the journal; only installed packages are kept. Name is the
// package name, with ":arch" appended (dpkg's own spelling) only when the
// same package is installed for two or more architectures, so that every
// Name is unique without decorating the usual single-arch package.
// Maintainer becomes Publisher; Source is "dpkg". The result is unsorted.
func dpkgPrograms(recs []dpkgRecord) []wire.Program {
	type key struct{ pkg, arch string }
	last := make(map[key]int, len(recs))
	for i, r := range recs {
		last[key{r.Package, r.Architecture}] = i
	}
	archs := map[string]int{}
	keep := make([]dpkgRecord, 0, len(last))
	for i, r := range recs {
		if last[key{r.Package, r.Architecture}] != i || !r.installed() {
			continue
		}
		keep = append(keep, r)
		archs[r.Package]++
	}
	out := make([]wire.Program, 0, len(keep))
	for _, r := range keep {
		name := r.Package
		if archs[r.Package] > 1 {
			name += ":" + r.Architecture
		}
		out = append(out, wire.Program{
			Name:      name,
			Version:   r.Version,
			Publisher: r.Maintainer,
			Source:    "dpkg",
		})
	}
	return out
}

// sortPackagePrograms orders by (Name, Version, Source), then Publisher, so that
// two collections of an unchanged host are equal.
func sortPackagePrograms(ps []wire.Program) {
	slices.SortFunc(ps, func(a, b wire.Program) int {
		return cmp.Or(
			strings.Compare(a.Name, b.Name),
			strings.Compare(a.Version, b.Version),
			strings.Compare(a.Source, b.Source),
			strings.Compare(a.Publisher, b.Publisher),
			strings.Compare(a.InstallDate, b.InstallDate),
		)
	})
}
