//go:build windows

package inventory

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"golang.org/x/sys/windows/registry"

	"github.com/kanade-project/kanade/internal/wire"
)

// uninstallPath is where installers register themselves for "Apps &
// features" / "Programs and Features".
const uninstallPath = `SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall`

// uninstallView is one registry view of an Uninstall key.
type uninstallView struct {
	root     registry.Key
	rootName string // for notes: HKLM
	path     string
	// access selects the view: registry.WOW64_64KEY or WOW64_32KEY (0:
	// the process's own).
	access uint32
	source string // wire.Program.Source: registry64, registry32
}

// hostUninstallViews: 64-bit Windows keeps 32-bit programs' entries in a
// separate view (WOW6432Node), so both are read. 32-bit Windows has one.
func hostUninstallViews() []uninstallView {
	if nativeArch() == "386" {
		return []uninstallView{{registry.LOCAL_MACHINE, "HKLM", uninstallPath, 0, "registry32"}}
	}
	return []uninstallView{
		{registry.LOCAL_MACHINE, "HKLM", uninstallPath, registry.WOW64_64KEY, "registry64"},
		{registry.LOCAL_MACHINE, "HKLM", uninstallPath, registry.WOW64_32KEY, "registry32"},
	}
}

// Software reads the machine-wide Uninstall keys (per-user installs under
// HKCU are not machine inventory) and the hotfixes WMI knows
// (Win32_QuickFixEngineering).
func (c *windowsCollector) Software(ctx context.Context) wire.Software {
	var s wire.Software
	for _, v := range c.uninstall {
		if ctx.Err() != nil {
			s.Notes = append(s.Notes, "programs: collection stopped early: "+context.Cause(ctx).Error())
			break
		}
		progs, notes := readUninstall(v)
		s.Programs = append(s.Programs, progs...)
		s.Notes = append(s.Notes, notes...)
	}
	sortWinPrograms(s.Programs)
	// An installer that registered twice under two keys with the same
	// name, version and publisher is one program to an admin.
	s.Programs = slices.Compact(s.Programs)

	for _, r := range c.wmiRows(ctx, &s.Notes, "Win32_QuickFixEngineering", []string{"HotFixID", "Description", "InstalledOn"}, "") {
		id := r.String("HotFixID")
		if id == "" {
			continue
		}
		s.Hotfixes = append(s.Hotfixes, wire.Hotfix{ID: id, Description: r.String("Description"), InstalledOn: hotfixDate(r.String("InstalledOn"))})
	}
	slices.SortFunc(s.Hotfixes, func(a, b wire.Hotfix) int {
		return cmp.Or(strings.Compare(a.ID, b.ID), strings.Compare(a.Description, b.Description),
			strings.Compare(a.InstalledOn, b.InstalledOn))
	})
	s.Hotfixes = slices.Compact(s.Hotfixes)
	return s
}

// readUninstall lists the programs of one view. Skipped, as "Apps &
// features" skips them: entries without a DisplayName, SystemComponent=1
// (parts of another product) and entries with a ParentKeyName (updates of
// another entry).
func readUninstall(v uninstallView) ([]wire.Program, []string) {
	where := fmt.Sprintf(`%s\%s (%s)`, v.rootName, v.path, v.source)
	k, err := registry.OpenKey(v.root, v.path, registry.ENUMERATE_SUB_KEYS|v.access)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, registry.ErrNotExist) {
		return nil, []string{where + ": not present"}
	}
	if err != nil {
		return nil, []string{where + ": " + err.Error()}
	}
	defer k.Close()
	names, err := k.ReadSubKeyNames(-1)
	if err != nil {
		return nil, []string{where + ": listing entries: " + err.Error()}
	}
	var (
		out        []wire.Program
		unreadable int
	)
	for _, name := range names {
		sk, err := registry.OpenKey(k, name, registry.QUERY_VALUE|v.access)
		if err != nil {
			unreadable++
			continue
		}
		p, ok := uninstallEntry(sk, v.source)
		sk.Close()
		if ok {
			out = append(out, p)
		}
	}
	var notes []string
	if unreadable > 0 {
		notes = append(notes, fmt.Sprintf("%s: %d entries could not be opened", where, unreadable))
	}
	return out, notes
}

func uninstallEntry(k registry.Key, source string) (wire.Program, bool) {
	name := regString(k, "DisplayName")
	if name == "" {
		return wire.Program{}, false
	}
	if sc, _, err := k.GetIntegerValue("SystemComponent"); err == nil && sc == 1 {
		return wire.Program{}, false
	}
	if regString(k, "ParentKeyName") != "" {
		return wire.Program{}, false
	}
	return wire.Program{
		Name:        name,
		Version:     regString(k, "DisplayVersion"),
		Publisher:   regString(k, "Publisher"),
		Source:      source,
		InstallDate: uninstallDate(regString(k, "InstallDate")),
	}, true
}

// sortWinPrograms orders by (Name, Version, Source), then the rest, so
// that two collections of an unchanged host are equal.
func sortWinPrograms(ps []wire.Program) {
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
