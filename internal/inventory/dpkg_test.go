package inventory

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/kanade-project/kanade/internal/wire"
)

// TestDpkgInstalledByStatus: which of dpkg's want/error/status triples
// count as installed.
func TestDpkgInstalledByStatus(t *testing.T) {
	for status, want := range map[string]bool{
		"install ok installed":        true,
		"hold ok installed":           true, // held: installed, pinned
		"deinstall ok installed":      true, // removal requested, files still there
		"install ok triggers-pending": true,
		"install ok triggers-awaited": true,
		"install ok unpacked":         false,
		"install ok half-installed":   false,
		"install ok half-configured":  false,
		"deinstall ok config-files":   false,
		"purge ok not-installed":      false,
		"install reinstreq installed": false,
		"install ok":                  false,
		"":                            false,
	} {
		if got := (dpkgRecord{Status: status}).installed(); got != want {
			t.Errorf("installed(%q) = %v, want %v", status, got, want)
		}
	}
}

// TestParseDpkgStatusFormat: stanza splitting, continuation lines (one
// looking like a field), case-insensitive names, CRLF, whitespace-only
// separators, a stanza without Package, no final newline.
func TestParseDpkgStatusFormat(t *testing.T) {
	in := "Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\nMaintainer: M <m@x>\n" +
		"Description: first line\n continuation\n Package: fake\n .\n\tVersion: 666\n" +
		"\n \t \n" + // whitespace-only line: a separator
		"PACKAGE: b\r\nstatus: hold ok installed\r\nversion: 2\r\n\r\n" +
		"Description: no package here\nVersion: 3\n\n" +
		"Package: c\nVersion: 4" // no trailing newline
	got, err := parseDpkgStatus(context.Background(), strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []dpkgRecord{
		{Package: "a", Version: "1", Architecture: "amd64", Maintainer: "M <m@x>", Status: "install ok installed"},
		{Package: "b", Version: "2", Status: "hold ok installed"},
		{Package: "c", Version: "4"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// TestDpkgProgramsNamingAndJournal: ":arch" only for a package installed
// for two architectures; a later record (the updates/ journal) replaces an
// earlier one of the same package and architecture.
func TestDpkgProgramsNamingAndJournal(t *testing.T) {
	ok := "install ok installed"
	recs := []dpkgRecord{
		{Package: "libc6", Version: "2.36", Architecture: "amd64", Status: ok, Maintainer: "G"},
		{Package: "libc6", Version: "2.36", Architecture: "i386", Status: ok, Maintainer: "G"},
		{Package: "libfoo", Version: "1", Architecture: "amd64", Status: ok},
		{Package: "libfoo", Version: "1", Architecture: "i386", Status: "deinstall ok config-files"},
		{Package: "bar", Version: "1", Architecture: "all", Status: "install ok unpacked"},
		{Package: "bar", Version: "2", Architecture: "all", Status: ok}, // journal: configured since
		{Package: "baz", Version: "1", Architecture: "amd64", Status: ok},
		{Package: "baz", Version: "1", Architecture: "amd64", Status: "purge ok not-installed"}, // journal: removed
	}
	got := dpkgPrograms(recs)
	sortPackagePrograms(got)
	want := []wire.Program{
		{Name: "bar", Version: "2", Source: "dpkg"},
		{Name: "libc6:amd64", Version: "2.36", Publisher: "G", Source: "dpkg"},
		{Name: "libc6:i386", Version: "2.36", Publisher: "G", Source: "dpkg"},
		{Name: "libfoo", Version: "1", Source: "dpkg"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// TestParseDpkgStatusStopsOnCancel: a cancelled ctx ends a long parse
// early with the context's error.
func TestParseDpkgStatusStopsOnCancel(t *testing.T) {
	var b strings.Builder
	const n = 5000
	for i := range n {
		fmt.Fprintf(&b, "Package: p%d\nStatus: install ok installed\nVersion: 1\n\n", i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got, err := parseDpkgStatus(ctx, strings.NewReader(b.String()))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if len(got) >= n {
		t.Errorf("parsed all %d stanzas despite cancellation", len(got))
	}
}

// TestParseDpkgStatusLongLine: a line above the limit is an error, not a
// silent truncation.
func TestParseDpkgStatusLongLine(t *testing.T) {
	in := "Package: a\nDescription: " + strings.Repeat("x", maxControlLine+1) + "\n"
	if _, err := parseDpkgStatus(context.Background(), strings.NewReader(in)); err == nil {
		t.Fatal("no error for an over-long line")
	}
}
