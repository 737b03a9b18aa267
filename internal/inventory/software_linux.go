//go:build linux

package inventory

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/kanade-project/kanade/internal/wire"
)

const (
	dpkgStatus  = "/var/lib/dpkg/status"
	dpkgUpdates = "/var/lib/dpkg/updates"
)

// rpmDBDirs are where an rpm database lives (/var/lib/rpm is a symlink to
// the second on Fedora 36+ and openSUSE).
var rpmDBDirs = []string{"/var/lib/rpm", "/usr/lib/sysimage/rpm"}

// Software lists the dpkg and rpm packages; Linux has no hotfixes.
func (c *linuxCollector) Software(ctx context.Context) wire.Software {
	var sw wire.Software
	if ctx.Err() != nil {
		sw.Notes = append(sw.Notes, cancelNote(ctx, "software"))
		return sw
	}
	haveDpkg := c.exists(dpkgStatus)
	if haveDpkg {
		var progs []wire.Program
		progs, sw.Notes = c.dpkg(ctx, sw.Notes)
		sw.Programs = append(sw.Programs, progs...)
	}
	rpmDB := ""
	for _, d := range rpmDBDirs {
		if c.exists(d) {
			rpmDB = d
			break
		}
	}
	if rpmDB != "" && ctx.Err() == nil {
		var progs []wire.Program
		progs, sw.Notes = c.rpm(ctx, rpmDB, sw.Notes)
		sw.Programs = append(sw.Programs, progs...)
	}
	if !haveDpkg && rpmDB == "" {
		sw.Notes = append(sw.Notes, "no package database: neither "+dpkgStatus+" nor "+rpmDBDirs[0])
	}
	sortPackagePrograms(sw.Programs)
	return sw
}

func (c *linuxCollector) exists(p string) bool {
	_, err := os.Stat(c.hostPath(p))
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}

// dpkg reads the status file then the journal (updates/NNNN, applied in
// order, as dpkg and dpkg-query do before answering).
func (c *linuxCollector) dpkg(ctx context.Context, notes []string) ([]wire.Program, []string) {
	f, err := c.open(c.hostPath(dpkgStatus))
	if err != nil {
		return nil, append(notes, fileNote(dpkgStatus, err))
	}
	recs, err := parseDpkgStatus(ctx, f)
	f.Close()
	if err != nil {
		if ctx.Err() != nil {
			return nil, append(notes, cancelNote(ctx, "dpkg"))
		}
		return nil, append(notes, fileNote(dpkgStatus, err))
	}

	ents, err := os.ReadDir(c.hostPath(dpkgUpdates))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		notes = append(notes, fileNote(dpkgUpdates, err))
	}
	var journal []string
	for _, e := range ents {
		if isDigits(e.Name()) { // skip tmp.i and the like
			journal = append(journal, e.Name())
		}
	}
	slices.SortFunc(journal, func(a, b string) int {
		return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b))
	})
	for _, name := range journal {
		p := dpkgUpdates + "/" + name
		jf, err := c.open(c.hostPath(p))
		if err != nil {
			notes = append(notes, fileNote(p, err))
			continue
		}
		more, err := parseDpkgStatus(ctx, jf)
		jf.Close()
		if err != nil {
			notes = append(notes, fileNote(p, err))
			continue
		}
		recs = append(recs, more...)
	}
	return dpkgPrograms(recs), notes
}

// rpm runs rpm -qa (the Berkeley DB / NDB / SQLite databases are not
// parseable without librpm) with a timeout; any failure is a note and no
// rpm programs.
func (c *linuxCollector) rpm(ctx context.Context, db string, notes []string) ([]wire.Program, []string) {
	bin, err := c.lookPath("rpm")
	if err != nil {
		return nil, append(notes, "rpm database at "+db+" but no rpm binary on PATH: rpm packages not listed")
	}
	rctx, cancel := context.WithTimeout(ctx, c.rpmTimeout)
	defer cancel()
	args := []string{"-qa", "--queryformat", rpmQueryFormat}
	if c.root != "" {
		args = append([]string{"--root", c.root}, args...)
	}
	cmd := exec.CommandContext(rctx, bin, args...)
	cmd.WaitDelay = time.Second // a grandchild holding stdout must not hang us
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, append(notes, cancelNote(ctx, "rpm"))
	case err != nil && rctx.Err() != nil:
		return nil, append(notes, fmt.Sprintf("rpm -qa: timed out after %v", c.rpmTimeout))
	case err != nil:
		msg := err.Error()
		if s := strings.TrimSpace(stderr.String()); s != "" {
			first, _, _ := strings.Cut(s, "\n")
			msg += ": " + first
		}
		return nil, append(notes, "rpm -qa: "+msg)
	}
	recs, bad := parseRPMQuery(string(out))
	if bad > 0 {
		notes = append(notes, fmt.Sprintf("rpm -qa: %d malformed lines skipped", bad))
	}
	return rpmPrograms(recs), notes
}
