//go:build linux

package inventory

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kanade-project/kanade/internal/wire"
)

// fakeRoot copies testdata/linux/<name> into a temporary directory (so no
// test can alter the fixtures) and adds the symlinks, which the fixtures
// cannot carry portably.
func fakeRoot(t testing.TB, name string, links map[string]string) string {
	t.Helper()
	dst := t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(filepath.Join("testdata", "linux", name))); err != nil {
		t.Fatal(err)
	}
	for link, target := range links {
		if err := os.MkdirAll(filepath.Dir(dst+link), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, dst+link); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// fakeStatfs answers statfs by mount point (below the fake root).
var fakeStatfs = map[string]unix.Statfs_t{
	"/":                   {Bsize: 4096, Frsize: 4096, Blocks: 1_000_000, Bavail: 250_000, Bfree: 300_000},
	"/boot/efi":           {Bsize: 512, Frsize: 512, Blocks: 1_048_576, Bavail: 1_000_000},
	"/boot":               {Bsize: 512, Frsize: 512, Blocks: 524_288, Bavail: 400_000},
	"/home":               {Bsize: 4096, Frsize: 4096, Blocks: 2_000_000, Bavail: 1_500_000},
	"/srv/data":           {Bsize: 65536, Frsize: 4096, Blocks: 10_000, Bavail: 5_000}, // df uses f_frsize
	"/var/lib/containers": {Bsize: 4096, Frsize: 4096, Blocks: 1, Bavail: 1},           // second mount of sda1: never asked
	"/mnt/usb stick":      {Bsize: 0, Frsize: 0, Blocks: 7, Bavail: 3},                 // no sizes at all: 0 bytes
}

// fakeCollector is a collector over a fake tree with every live-host hook
// replaced: statfs by fakeStatfs (/mnt/win fails), file times by times,
// interfaces by a fixed unsorted list, and no rpm binary.
func fakeCollector(t testing.TB, root string, times map[string][2]time.Time) *linuxCollector {
	t.Helper()
	c := newLinux(Sources{Root: root})
	c.statfs = func(path string, st *unix.Statfs_t) error {
		mp, ok := strings.CutPrefix(path, root)
		if !ok {
			t.Errorf("statfs outside the fake root: %s", path)
		}
		v, ok := fakeStatfs[mp]
		if !ok {
			return &fs.PathError{Op: "statfs", Path: path, Err: syscall.ENOENT}
		}
		*st = v
		return nil
	}
	c.fileTimes = func(path string) (time.Time, time.Time, error) {
		p, ok := strings.CutPrefix(path, root)
		if !ok {
			t.Errorf("stat outside the fake root: %s", path)
		}
		if p == "" {
			p = "/"
		}
		v, ok := times[p]
		if !ok {
			return time.Time{}, time.Time{}, &fs.PathError{Op: "statx", Path: path, Err: syscall.ENOENT}
		}
		return v[0], v[1], nil
	}
	c.interfaces = func() ([]wire.Interface, error) {
		return []wire.Interface{
			{Name: "wlan0", MAC: "dc:a6:32:00:00:02", Up: false},
			{Name: "eth0", MAC: "dc:a6:32:00:00:01", Up: true, IPv4: []string{"192.0.2.10/24"}, IPv6: []string{"2001:db8::10/64", "fe80::dea6:32ff:fe00:1/64"}},
			{Name: "lo", Up: true, IPv4: []string{"127.0.0.1/8"}, IPv6: []string{"::1/128"}},
		}, nil
	}
	c.lookPath = func(string) (string, error) { return "", exec.ErrNotFound }
	return c
}

// denyOpen makes open fail with EACCES (what a non-root agent gets on the
// 0400 DMI files) for paths ending in one of suffixes; the tests run as
// root, so chmod cannot produce it.
func denyOpen(c *linuxCollector, suffixes ...string) {
	orig := c.open
	c.open = func(name string) (io.ReadCloser, error) {
		for _, s := range suffixes {
			if strings.HasSuffix(name, s) {
				return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EACCES}
			}
		}
		return orig(name)
	}
}

func ptime(t time.Time) *time.Time { return &t }

var installerBirth = time.Date(2023, 5, 1, 10, 0, 0, 0, time.UTC)

func xeonCollector(t testing.TB) *linuxCollector {
	root := fakeRoot(t, "xeon2s", map[string]string{"/etc/localtime": "../usr/share/zoneinfo/Asia/Tokyo"})
	c := fakeCollector(t, root, map[string][2]time.Time{
		"/var/log/installer": {installerBirth, installerBirth.Add(time.Hour)},
		"/":                  {time.Unix(1, 0).UTC(), time.Now()},
	})
	denyOpen(c, "/sys/class/dmi/id/product_serial")
	return c
}

// TestFakeXeonAllSectionsExact asserts every field of the four sections of
// the 2-socket Debian tree, including the order of every list.
func TestFakeXeonAllSectionsExact(t *testing.T) {
	c := xeonCollector(t)
	ctx := t.Context()

	wantHW := wire.Hardware{
		Manufacturer: "Dell Inc.",
		Model:        "PowerEdge R640",
		SMBIOSUUID:   "4c4c4544-0058-4b10-8034-b7c04f513533",
		CPU:          wire.CPU{Model: "Intel(R) Xeon(R) Gold 6128 CPU @ 3.40GHz", Sockets: 2, Cores: 8, LogicalProcessors: 16},
		RAMBytes:     65843236 * 1024,
		Disks: []wire.Disk{
			{ID: "/dev/mapper/vg0-home", Mount: "/home", FileSystem: "btrfs", SizeBytes: 2_000_000 * 4096, FreeBytes: 1_500_000 * 4096},
			{ID: "/dev/nvme0n1p1", Mount: "/boot/efi", FileSystem: "vfat", SizeBytes: 1_048_576 * 512, FreeBytes: 1_000_000 * 512},
			{ID: "/dev/nvme0n1p2", Mount: "/", FileSystem: "ext4", SizeBytes: 1_000_000 * 4096, FreeBytes: 250_000 * 4096},
			{ID: "/dev/sda1", Mount: "/srv/data", FileSystem: "xfs", SizeBytes: 10_000 * 4096, FreeBytes: 5_000 * 4096},
			{ID: "/dev/sdb1", Mount: "/mnt/usb stick", FileSystem: "vfat", SizeBytes: 0, FreeBytes: 0},
			{ID: "/dev/sdc1", Mount: "/mnt/win", FileSystem: "fuseblk"},
		},
		BIOS: wire.BIOS{Vendor: "Dell Inc.", Version: "2.19.1", ReleaseDate: "2023-07-11"},
		Notes: []string{
			"/sys/class/dmi/id/product_serial: needs root (permission denied)",
			"statfs /mnt/win (/dev/sdc1): no such file or directory",
		},
	}
	assertEqual(t, "hardware", c.Hardware(ctx), wantHW)

	wantOS := wire.OSInfo{
		Name: "Debian GNU/Linux", Version: "12", Build: "bookworm",
		Kernel:      "6.1.0-18-amd64",
		Arch:        runtime.GOARCH,
		InstallDate: ptime(installerBirth),
		LastBoot:    ptime(time.Unix(1700000000, 0).UTC()),
		TimeZone:    "Asia/Tokyo", // the link, not the stale /etc/timezone (Etc/UTC)
		Domain:      "corp.example",
		Notes:       []string{"install date: birth time of /var/log/installer"},
	}
	assertEqual(t, "os", c.OS(ctx), wantOS)

	wantNet := wire.Network{
		Interfaces: []wire.Interface{
			{Name: "eth0", MAC: "dc:a6:32:00:00:01", Up: true, IPv4: []string{"192.0.2.10/24"}, IPv6: []string{"2001:db8::10/64", "fe80::dea6:32ff:fe00:1/64"}},
			{Name: "lo", Up: true, IPv4: []string{"127.0.0.1/8"}, IPv6: []string{"::1/128"}},
			{Name: "wlan0", MAC: "dc:a6:32:00:00:02"},
		},
		// 192.0.2.1 twice (eth0, eth1) once; wg0's gateway-less default and
		// lo's reject route skipped; the link-local router keeps its zone.
		DefaultGateways: []string{"192.0.2.1", "192.168.51.1", "2001:db8::1", "fe80::1%eth0"},
		DNSServers:      []string{"192.0.2.53", "2001:db8::53", "fe80::1%eth0"},
	}
	assertEqual(t, "network", c.Network(ctx), wantNet)

	maint := "GNU Libc Maintainers <debian-glibc@lists.debian.org>"
	wantSW := wire.Software{Programs: []wire.Program{
		{Name: "base-files", Version: "12.4+deb12u5", Publisher: "Santiago Vila <sanvila@debian.org>", Source: "dpkg"},
		{Name: "curl", Version: "7.88.1-10+deb12u5", Publisher: "Debian Curl Maintainers <team+curl@tracker.debian.org>", Source: "dpkg"},
		{Name: "libc6:amd64", Version: "2.36-9+deb12u4", Publisher: maint, Source: "dpkg"},
		{Name: "libc6:i386", Version: "2.36-9+deb12u4", Publisher: maint, Source: "dpkg"},
		{Name: "linux-image-6.1.0-18-amd64", Version: "6.1.76-1", Publisher: "Debian Kernel Team <debian-kernel@lists.debian.org>", Source: "dpkg"},
		{Name: "man-db", Version: "2.11.2-2", Publisher: "Colin Watson <cjwatson@debian.org>", Source: "dpkg"},
		{Name: "openssl", Version: "3.0.11-1~deb12u2", Publisher: "Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>", Source: "dpkg"},
		{Name: "telnet", Version: "0.17+2.4-2", Publisher: "Debian QA Group <packages@qa.debian.org>", Source: "dpkg"},
		{Name: "tzdata", Version: "2024a-0+deb12u1", Publisher: maint, Source: "dpkg"},
		{Name: "zlib1g", Version: "1:1.2.13.dfsg-1", Publisher: "Mark Brown <broonie@debian.org>", Source: "dpkg"},
	}}
	assertEqual(t, "software", c.Software(ctx), wantSW)
}

func assertEqual[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

// TestFakeCPUVariants: socket/core/logical counting and its fallbacks,
// per cpuinfo flavour.
func TestFakeCPUVariants(t *testing.T) {
	for _, tc := range []struct {
		tree      string
		want      wire.CPU
		wantNotes []string
	}{
		{
			// 2 sockets x 4 cores x 2 threads; core ids (0,1,9,10) repeat
			// across sockets, so cores must count (physical id, core id).
			tree: "xeon2s",
			want: wire.CPU{Model: "Intel(R) Xeon(R) Gold 6128 CPU @ 3.40GHz", Sockets: 2, Cores: 8, LogicalProcessors: 16},
		},
		{
			// arm64: no model name, no physical/core id, no sysfs topology.
			tree:      "armsbc",
			want:      wire.CPU{Model: "ARM part 0xd08", Sockets: 1, Cores: 4, LogicalProcessors: 4},
			wantNotes: []string{`/proc/cpuinfo: no "physical id"/"core id" and no sysfs topology; assuming 1 socket and one core per logical processor`},
		},
		{
			// 32-bit ARM: topology from sysfs (package id -1 = one package),
			// cpu3 present but offline (absent from cpuinfo).
			tree: "armv7",
			want: wire.CPU{Model: "ARMv7 Processor rev 4 (v7l)", Sockets: 1, Cores: 3, LogicalProcessors: 4},
			wantNotes: []string{
				"1 of 4 logical processors are offline (count from /sys/devices/system/cpu)",
				`/proc/cpuinfo: no "physical id"/"core id"; sockets and cores from /sys/devices/system/cpu/cpu*/topology`,
			},
		},
		{
			tree:      "rhel", // no /proc at all
			wantNotes: []string{"/proc/cpuinfo: not present"},
		},
	} {
		t.Run(tc.tree, func(t *testing.T) {
			c := fakeCollector(t, fakeRoot(t, tc.tree, nil), nil)
			got, notes := c.cpu(nil)
			assertEqual(t, "cpu", got, tc.want)
			assertEqual(t, "notes", notes, tc.wantNotes)
		})
	}
}

// TestFakeMeminfo: MemTotal in kB becomes bytes; absence is a note.
func TestFakeMeminfo(t *testing.T) {
	for _, tc := range []struct {
		tree  string
		want  uint64
		notes []string
	}{
		{"xeon2s", 65843236 * 1024, nil},
		{"armsbc", 3884360 * 1024, nil},
		{"armv7", 0, []string{"/proc/meminfo: not present"}},
	} {
		t.Run(tc.tree, func(t *testing.T) {
			c := fakeCollector(t, fakeRoot(t, tc.tree, nil), nil)
			got, notes := c.memTotal(nil)
			if got != tc.want {
				t.Errorf("RAM = %d, want %d", got, tc.want)
			}
			assertEqual(t, "notes", notes, tc.notes)
		})
	}
}

// TestFakeOSReleaseVariants: name/version/build per os-release flavour,
// including the /usr/lib fallback and the absence of both files.
func TestFakeOSReleaseVariants(t *testing.T) {
	for _, tc := range []struct {
		tree                 string
		name, version, build string
		notes                []string
	}{
		{"xeon2s", "Debian GNU/Linux", "12", "bookworm", nil},
		{"armsbc", "Arch Linux ARM", "", "rolling", nil}, // /usr/lib/os-release, single quotes, BUILD_ID
		{"armv7", "Raspbian GNU/Linux", "11", "bullseye", nil},
		{"rhel", "Red Hat Enterprise Linux", "9.3", "", nil},
	} {
		t.Run(tc.tree, func(t *testing.T) {
			c := fakeCollector(t, fakeRoot(t, tc.tree, nil), nil)
			var o wire.OSInfo
			c.osRelease(&o)
			if o.Name != tc.name || o.Version != tc.version || o.Build != tc.build {
				t.Errorf("got (%q, %q, %q), want (%q, %q, %q)", o.Name, o.Version, o.Build, tc.name, tc.version, tc.build)
			}
			assertEqual(t, "notes", o.Notes, tc.notes)
		})
	}
	t.Run("absent", func(t *testing.T) {
		c := fakeCollector(t, t.TempDir(), nil)
		var o wire.OSInfo
		c.osRelease(&o)
		if o.Name != "Linux" {
			t.Errorf("Name = %q, want the os-release(5) default Linux", o.Name)
		}
		assertEqual(t, "notes", o.Notes, []string{"/etc/os-release: not present"})
	})
}

func TestParseOSReleaseQuoting(t *testing.T) {
	got := parseOSRelease(`# comment
NAME="Red Hat \"Enterprise\" Linux"
ID='rhel'
VERSION_ID=9.3

PATH_LIKE="a\\b\$c\` + "`" + `d\x"
EMPTY=
BROKEN LINE
`)
	want := map[string]string{
		"NAME":       `Red Hat "Enterprise" Linux`,
		"ID":         "rhel",
		"VERSION_ID": "9.3",
		"PATH_LIKE":  "a\\b$c`d\\x",
		"EMPTY":      "",
	}
	assertEqual(t, "os-release", got, want)
}

// TestFakeArmsbcOSNetworkSoftware: a host without DMI, without installer
// traces or birth time, without a time zone file, with the resolved stub
// and no package database — every gap is a note.
func TestFakeArmsbcOSNetworkSoftware(t *testing.T) {
	c := fakeCollector(t, fakeRoot(t, "armsbc", nil), nil)
	ctx := t.Context()

	hw := c.Hardware(ctx)
	if hw.Manufacturer != "" || hw.Serial != "" || hw.BIOS != (wire.BIOS{}) {
		t.Errorf("DMI fields set without DMI: %+v", hw)
	}
	if len(hw.Notes) == 0 || !strings.HasPrefix(hw.Notes[0], "/sys/class/dmi/id: not present") {
		t.Errorf("no single DMI note first: %q", hw.Notes)
	}
	assertEqual(t, "disks", hw.Disks, []wire.Disk{
		{ID: "/dev/mmcblk0p1", Mount: "/boot", FileSystem: "vfat", SizeBytes: 524_288 * 512, FreeBytes: 400_000 * 512},
		{ID: "/dev/root", Mount: "/", FileSystem: "ext4", SizeBytes: 1_000_000 * 4096, FreeBytes: 250_000 * 4096},
	})

	zone, _ := time.Now().Zone()
	assertEqual(t, "os", c.OS(ctx), wire.OSInfo{
		Name: "Arch Linux ARM", Build: "rolling", Kernel: "6.6.20+rpt-rpi-v8", Arch: runtime.GOARCH,
		LastBoot: ptime(time.Unix(1600000000, 0).UTC()),
		TimeZone: zone,
		Notes: []string{
			"install date unknown: no /var/log/installer or /root/anaconda-ks.cfg, and / has no birth time",
			"time zone: /etc/localtime is not a zoneinfo link and /etc/timezone is absent; abbreviation of the agent process's zone",
		},
	})

	n := c.Network(ctx)
	assertEqual(t, "gateways", n.DefaultGateways, []string(nil))
	assertEqual(t, "dns", n.DNSServers, []string{"192.168.1.1", "1.1.1.1"})
	assertEqual(t, "network notes", n.Notes, []string{
		"/proc/net/ipv6_route: not present",
		"DNS: /etc/resolv.conf points at the systemd-resolved stub 127.0.0.53; servers from /run/systemd/resolve/resolv.conf",
	})

	assertEqual(t, "software", c.Software(ctx), wire.Software{
		Notes: []string{"no package database: neither /var/lib/dpkg/status nor /var/lib/rpm"},
	})
}

// TestFakeDMIMissingAndUnreadable: the DMI directory present with files
// missing or unreadable: each becomes an empty field and a note naming the
// file.
func TestFakeDMIMissingAndUnreadable(t *testing.T) {
	root := fakeRoot(t, "xeon2s", nil)
	for _, f := range []string{"product_uuid", "bios_date"} {
		if err := os.Remove(root + dmiDir + "/" + f); err != nil {
			t.Fatal(err)
		}
	}
	c := fakeCollector(t, root, nil)
	denyOpen(c, "/sys/class/dmi/id/product_serial")
	var hw wire.Hardware
	c.dmi(&hw)
	assertEqual(t, "dmi", hw, wire.Hardware{
		Manufacturer: "Dell Inc.", Model: "PowerEdge R640",
		BIOS: wire.BIOS{Vendor: "Dell Inc.", Version: "2.19.1"},
		Notes: []string{
			"/sys/class/dmi/id/product_serial: needs root (permission denied)",
			"/sys/class/dmi/id/product_uuid: not present",
			"/sys/class/dmi/id/bios_date: not present",
		},
	})
}

// TestInstallDateMethods: the order of the install-date sources and the
// note naming the one used.
func TestInstallDateMethods(t *testing.T) {
	birth := time.Date(2022, 1, 2, 3, 4, 5, 0, time.UTC)
	mtime := birth.Add(48 * time.Hour)
	for _, tc := range []struct {
		name  string
		times map[string][2]time.Time
		want  *time.Time
		note  string
	}{
		{"installer birth", map[string][2]time.Time{"/var/log/installer": {birth, mtime}, "/": {mtime, mtime}}, &birth, "install date: birth time of /var/log/installer"},
		{"installer mtime", map[string][2]time.Time{"/var/log/installer": {{}, mtime}}, &mtime, "install date: modification time of /var/log/installer"},
		{"anaconda", map[string][2]time.Time{"/root/anaconda-ks.cfg": {birth, mtime}}, &birth, "install date: birth time of /root/anaconda-ks.cfg"},
		{"root birth", map[string][2]time.Time{"/": {birth, mtime}}, &birth, "install date: birth time of / (file system creation; an image build time on cloud images)"},
		{"root mtime only", map[string][2]time.Time{"/": {{}, mtime}}, nil, "install date unknown: no /var/log/installer or /root/anaconda-ks.cfg, and / has no birth time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeCollector(t, t.TempDir(), tc.times)
			got, notes := c.installDate(nil)
			assertEqual(t, "install date", got, tc.want)
			assertEqual(t, "notes", notes, []string{tc.note})
		})
	}
}

// TestFakeTimeZoneSources: the /etc/localtime link wins over
// /etc/timezone; posix/ and right/ prefixes are dropped; a copied (not
// linked) localtime falls back to /etc/timezone.
func TestFakeTimeZoneSources(t *testing.T) {
	for _, tc := range []struct {
		name, link, want string
	}{
		{"absolute link", "/usr/share/zoneinfo/Europe/Paris", "Europe/Paris"},
		{"relative link", "../usr/share/zoneinfo/Asia/Tokyo", "Asia/Tokyo"},
		{"posix link", "/usr/share/zoneinfo/posix/America/New_York", "America/New_York"},
		{"no link", "", "Etc/UTC"}, // xeon2s's /etc/timezone
	} {
		t.Run(tc.name, func(t *testing.T) {
			links := map[string]string{}
			if tc.link != "" {
				links["/etc/localtime"] = tc.link
			}
			c := fakeCollector(t, fakeRoot(t, "xeon2s", links), nil)
			got, notes := c.timeZone(nil)
			if got != tc.want || notes != nil {
				t.Errorf("got %q %q, want %q and no note", got, notes, tc.want)
			}
		})
	}
}

// TestFakeRPM runs the rpm path against a fake rpm binary: the arguments
// (--root, the query format), parsing, naming, sorting with dpkg, and
// failure notes (missing binary, non-zero exit, timeout).
func TestFakeRPM(t *testing.T) {
	root := fakeRoot(t, "rhel", nil)
	bin := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(bin, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := script("rpm-good", `
[ "$1" = --root ] && [ "$2" = "`+root+`" ] && [ "$3" = -qa ] && [ "$4" = --queryformat ] || { echo "bad args: $*" >&2; exit 9; }
[ "$5" = '%{NAME}\t%{VERSION}-%{RELEASE}\t%{VENDOR}\t%{ARCH}\n' ] || { echo "bad format: $5" >&2; exit 9; }
printf 'zlib\t1.2.11-40.el9\tRed Hat, Inc.\tx86_64\n'
printf 'glibc\t2.34-83.el9_3.7\tRed Hat, Inc.\ti686\n'
printf 'glibc\t2.34-83.el9_3.7\tRed Hat, Inc.\tx86_64\n'
printf 'gpg-pubkey\tfd431d51-4ae0493b\t(none)\t(none)\n'
printf 'kernel\t5.14.0-362.18.1.el9_3\tRed Hat, Inc.\tx86_64\n'
printf 'kernel\t5.14.0-284.11.1.el9_2\tRed Hat, Inc.\tx86_64\n'
printf 'local-tool\t1.0-1\t(none)\tnoarch\n'
printf 'garbage line\n'
`)
	fail := script("rpm-fail", "echo 'error: cannot open Packages database in /var/lib/rpm' >&2\necho 'second line' >&2\nexit 1\n")
	hang := script("rpm-hang", "exec sleep 60\n")

	rh := "Red Hat, Inc."
	for _, tc := range []struct {
		name    string
		bin     string
		timeout time.Duration
		want    wire.Software
	}{
		{"ok", good, 30 * time.Second, wire.Software{
			Programs: []wire.Program{
				{Name: "glibc.i686", Version: "2.34-83.el9_3.7", Publisher: rh, Source: "rpm"},
				{Name: "glibc.x86_64", Version: "2.34-83.el9_3.7", Publisher: rh, Source: "rpm"},
				{Name: "kernel", Version: "5.14.0-284.11.1.el9_2", Publisher: rh, Source: "rpm"},
				{Name: "kernel", Version: "5.14.0-362.18.1.el9_3", Publisher: rh, Source: "rpm"},
				{Name: "local-tool", Version: "1.0-1", Source: "rpm"},
				{Name: "zlib", Version: "1.2.11-40.el9", Publisher: rh, Source: "rpm"},
			},
			Notes: []string{"rpm -qa: 1 malformed lines skipped"},
		}},
		{"no binary", "", 30 * time.Second, wire.Software{
			Notes: []string{"rpm database at /var/lib/rpm but no rpm binary on PATH: rpm packages not listed"},
		}},
		{"exit 1", fail, 30 * time.Second, wire.Software{
			Notes: []string{"rpm -qa: exit status 1: error: cannot open Packages database in /var/lib/rpm"},
		}},
		// A hung rpm is killed at the timeout; 200 ms is the timeout under
		// test, not a synchronisation sleep.
		{"timeout", hang, 200 * time.Millisecond, wire.Software{
			Notes: []string{"rpm -qa: timed out after 200ms"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeCollector(t, root, nil)
			if tc.bin != "" {
				c.lookPath = func(string) (string, error) { return tc.bin, nil }
			}
			c.rpmTimeout = tc.timeout
			assertEqual(t, "software", c.Software(t.Context()), tc.want)
		})
	}
}

// TestFakeCollectionIsDeterministic: two collections of the same tree
// marshal to identical JSON, section by section.
func TestFakeCollectionIsDeterministic(t *testing.T) {
	c := xeonCollector(t)
	collect := func() [4][]byte {
		ctx := t.Context()
		var out [4][]byte
		for i, v := range []any{c.Hardware(ctx), c.OS(ctx), c.Network(ctx), c.Software(ctx)} {
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			out[i] = b
		}
		return out
	}
	a, b := collect(), collect()
	for i, s := range wire.Sections() {
		if string(a[i]) != string(b[i]) {
			t.Errorf("section %s differs:\n%s\n%s", s, a[i], b[i])
		}
		if len(a[i]) < 50 {
			t.Errorf("section %s suspiciously small: %s", s, a[i])
		}
	}
}

// TestEmptyRootGivesNotesNotPanics: a root with nothing in it yields notes
// in every section, no panic and no error.
func TestEmptyRootGivesNotesNotPanics(t *testing.T) {
	c := fakeCollector(t, t.TempDir(), nil)
	ctx := t.Context()
	hw, o, n, sw := c.Hardware(ctx), c.OS(ctx), c.Network(ctx), c.Software(ctx)
	for name, notes := range map[string][]string{"hw": hw.Notes, "os": o.Notes, "net": n.Notes, "sw": sw.Notes} {
		if len(notes) == 0 {
			t.Errorf("%s: no notes for an empty root", name)
		}
		for _, s := range notes {
			if strings.Contains(s, "/tmp/") {
				t.Errorf("%s: note leaks the root path: %q", name, s)
			}
		}
	}
	for _, want := range []string{"/proc/cpuinfo: not present", "/proc/meminfo: not present", "/proc/self/mounts: not present"} {
		if !contains(hw.Notes, want) {
			t.Errorf("hw notes %q lack %q", hw.Notes, want)
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestCancelledContextStopsEarly: with ctx already done every section
// returns at once with a note saying so, and runs no rpm.
func TestCancelledContextStopsEarly(t *testing.T) {
	c := xeonCollector(t)
	c.lookPath = func(string) (string, error) {
		t.Error("rpm looked up after cancellation")
		return "", exec.ErrNotFound
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	hw, o, n, sw := c.Hardware(ctx), c.OS(ctx), c.Network(ctx), c.Software(ctx)
	for name, v := range map[string]struct {
		notes []string
		empty bool
	}{
		"hardware": {hw.Notes, hw.CPU == (wire.CPU{}) && hw.Disks == nil},
		"os":       {o.Notes, o.Name == "" && o.Kernel == ""},
		"network":  {n.Notes, n.Interfaces == nil},
		"software": {sw.Notes, sw.Programs == nil},
	} {
		if !v.empty {
			t.Errorf("%s collected after cancellation", name)
		}
		if len(v.notes) != 1 || v.notes[0] != name+": collection stopped early: context canceled" {
			t.Errorf("%s notes = %q", name, v.notes)
		}
	}
}

// TestFakeHungStatfsIsBounded: a statfs that never returns (a wedged FUSE
// mount) costs one note after statfsTimeout, not the whole inventory; a
// cancellation while it hangs ends the disk walk.
func TestFakeHungStatfsIsBounded(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	hang := func(c *linuxCollector, hungMount string, before func()) {
		orig := c.statfs
		c.statfs = func(path string, st *unix.Statfs_t) error {
			if strings.HasSuffix(path, hungMount) {
				before()
				<-release
			}
			return orig(path, st)
		}
	}

	t.Run("timeout", func(t *testing.T) {
		c := xeonCollector(t)
		hang(c, "/mnt/win", func() {})
		c.statfsTimeout = 100 * time.Millisecond // the timeout under test
		disks, notes := c.disks(t.Context(), nil)
		if len(disks) != 6 {
			t.Errorf("%d disks, want all 6", len(disks))
		}
		assertEqual(t, "notes", notes, []string{"statfs /mnt/win (/dev/sdc1): no answer within 100ms (hung FUSE or network mount?)"})
	})

	t.Run("cancelled while hung", func(t *testing.T) {
		c := xeonCollector(t)
		ctx, cancel := context.WithCancel(t.Context())
		hang(c, "/srv/data", cancel)
		c.statfsTimeout = time.Hour
		disks, notes := c.disks(ctx, nil)
		if len(disks) != 3 { // /, /boot/efi, /srv/data (without sizes)
			t.Errorf("%d disks after cancellation, want 3: %+v", len(disks), disks)
		}
		assertEqual(t, "notes", notes, []string{
			"statfs /srv/data (/dev/sda1): context canceled",
			"disks: collection stopped early: context canceled",
		})
	})
}
