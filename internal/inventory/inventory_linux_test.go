//go:build linux

package inventory

// Tests against THIS machine: every figure the collector reports is checked
// against a separate tool (free, nproc, lscpu, df, ip, dpkg-query, uname,
// uptime, stat) or an independent parse. A sub-check whose tool is absent
// is skipped with the reason; the project's Debian 12 VM has them all.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/wire"
)

// need skips the test when tool is not on PATH.
func need(t testing.TB, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Skipf("%s not installed: %v", tool, err)
	}
}

// run returns the stdout of a command, failing the test on error.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s %q: %v %s", name, args, err, stderr)
	}
	return string(out)
}

func host() Collector { return New(Sources{}) }

// TestHostRAMEqualsMeminfoAndFree: ram_bytes is MemTotal of /proc/meminfo
// (parsed here with fmt.Sscanf) times 1024, and equals free -b's total to
// the byte.
func TestHostRAMEqualsMeminfoAndFree(t *testing.T) {
	got := host().Hardware(t.Context()).RAMBytes

	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var kb uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if n, _ := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); n == 1 {
			break
		}
	}
	if kb == 0 {
		t.Fatal("no MemTotal in /proc/meminfo")
	}
	if got != kb*1024 {
		t.Errorf("ram_bytes = %d, /proc/meminfo MemTotal = %d kB = %d bytes", got, kb, kb*1024)
	}

	need(t, "free")
	var freeTotal uint64
	for line := range strings.Lines(run(t, "free", "-b")) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Mem:" {
			freeTotal, _ = strconv.ParseUint(f[1], 10, 64)
		}
	}
	if freeTotal == 0 {
		t.Fatal("no Mem: line in free -b")
	}
	if got != freeTotal {
		t.Errorf("ram_bytes = %d, free -b total = %d (difference %d bytes)", got, freeTotal, int64(got)-int64(freeTotal))
	}
}

// TestHostLogicalProcessorsEqualNprocAll: logical processors equal nproc
// --all (glibc's configured processor count).
func TestHostLogicalProcessorsEqualNprocAll(t *testing.T) {
	need(t, "nproc")
	want, err := strconv.Atoi(strings.TrimSpace(run(t, "nproc", "--all")))
	if err != nil {
		t.Fatal(err)
	}
	if got := host().Hardware(t.Context()).CPU.LogicalProcessors; got != want {
		t.Errorf("logical processors = %d, nproc --all = %d", got, want)
	}
}

// TestHostSocketsAndCoresMatchLscpu: sockets and cores equal the distinct
// SOCKET and (SOCKET, CORE) values of lscpu -p, which reads sysfs rather
// than /proc/cpuinfo.
func TestHostSocketsAndCoresMatchLscpu(t *testing.T) {
	need(t, "lscpu")
	sockets, cores := map[string]bool{}, map[string]bool{}
	for line := range strings.Lines(run(t, "lscpu", "-p=SOCKET,CORE")) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		s, _, _ := strings.Cut(line, ",")
		sockets[s] = true
		cores[line] = true
	}
	cpu := host().Hardware(t.Context()).CPU
	if cpu.Sockets != len(sockets) || cpu.Cores != len(cores) {
		t.Errorf("sockets/cores = %d/%d, lscpu = %d/%d", cpu.Sockets, cpu.Cores, len(sockets), len(cores))
	}
	if cpu.Model == "" {
		t.Error("empty CPU model")
	}
}

// TestHostDisksMatchDf: every disk's device and size equal df -B1 for its
// mount point exactly; free space agrees within 1 % of df's figure (floor
// 16 MiB): other processes write between the two statfs calls, so free
// space cannot be compared exactly, while the size only changes on a
// resize. The root file system, when on a disk file system, must be
// listed (so the loop is not vacuous).
func TestHostDisksMatchDf(t *testing.T) {
	need(t, "df")
	disks := host().Hardware(t.Context()).Disks
	if !slices.IsSortedFunc(disks, func(a, b wire.Disk) int { return strings.Compare(a.ID, b.ID) }) {
		t.Errorf("disks not sorted by ID: %+v", disks)
	}

	rootOut := strings.Fields(strings.Split(run(t, "df", "--output=source,fstype", "/"), "\n")[1])
	if diskFS[rootOut[1]] && !slices.ContainsFunc(disks, func(d wire.Disk) bool { return d.ID == rootOut[0] }) {
		t.Errorf("root file system %s (%s) not among the disks %+v", rootOut[0], rootOut[1], disks)
	}

	for _, d := range disks {
		lines := strings.Split(strings.TrimSpace(run(t, "df", "-B1", "--output=source,size,avail", d.Mount)), "\n")
		f := strings.Fields(lines[len(lines)-1])
		if len(f) != 3 {
			t.Fatalf("df %s: %q", d.Mount, lines)
		}
		size, _ := strconv.ParseUint(f[1], 10, 64)
		avail, _ := strconv.ParseUint(f[2], 10, 64)
		if d.ID != f[0] {
			t.Errorf("%s: device %s, df says %s", d.Mount, d.ID, f[0])
		}
		if d.SizeBytes != size {
			t.Errorf("%s: size %d, df %d", d.Mount, d.SizeBytes, size)
		}
		tol := max(avail/100, 16<<20)
		if diff := absDiff(d.FreeBytes, avail); diff > tol {
			t.Errorf("%s: free %d, df avail %d (off by %d > %d)", d.Mount, d.FreeBytes, avail, diff, tol)
		}
		t.Logf("%s on %s (%s): size %d = df; free %d vs df %d", d.ID, d.Mount, d.FileSystem, d.SizeBytes, d.FreeBytes, avail)
	}
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

// ipLink is the part of `ip -j addr` the test compares.
type ipLink struct {
	IfName   string   `json:"ifname"`
	Flags    []string `json:"flags"`
	Address  string   `json:"address"`
	AddrInfo []struct {
		Family    string `json:"family"`
		Local     string `json:"local"`
		Prefixlen int    `json:"prefixlen"`
	} `json:"addr_info"`
}

// TestHostInterfacesMatchIPAddr: interface names, up flags, MACs (for
// link types whose address is a MAC) and every IPv4/IPv6 address with its
// prefix length equal those of `ip -j addr`; interfaces are sorted by name.
func TestHostInterfacesMatchIPAddr(t *testing.T) {
	need(t, "ip")
	var links []ipLink
	if err := json.Unmarshal([]byte(run(t, "ip", "-j", "addr")), &links); err != nil {
		t.Fatal(err)
	}
	got := host().Network(t.Context())
	if !slices.IsSortedFunc(got.Interfaces, func(a, b wire.Interface) int { return strings.Compare(a.Name, b.Name) }) {
		t.Errorf("interfaces not sorted by name")
	}
	byName := map[string]wire.Interface{}
	for _, i := range got.Interfaces {
		byName[i.Name] = i
	}
	if len(byName) != len(links) {
		t.Errorf("%d interfaces, ip addr shows %d", len(byName), len(links))
	}
	for _, l := range links {
		gi, ok := byName[l.IfName]
		if !ok {
			t.Errorf("interface %s (ip addr) missing", l.IfName)
			continue
		}
		if up := slices.Contains(l.Flags, "UP"); gi.Up != up {
			t.Errorf("%s: up = %v, ip flags %v", l.IfName, gi.Up, l.Flags)
		}
		if hw, err := net.ParseMAC(l.Address); err == nil {
			want := hw.String()
			if strings.Trim(want, "0:") == "" {
				want = "" // all-zero (loopback): Go reports no address
			}
			if gi.MAC != want {
				t.Errorf("%s: MAC %q, ip addr %q", l.IfName, gi.MAC, l.Address)
			}
		}
		var want4, want6 []netip.Prefix
		for _, a := range l.AddrInfo {
			p := netip.MustParsePrefix(a.Local + "/" + strconv.Itoa(a.Prefixlen))
			if a.Family == "inet" {
				want4 = append(want4, p)
			} else {
				want6 = append(want6, p)
			}
		}
		comparePrefixes(t, l.IfName+" IPv4", gi.IPv4, want4)
		comparePrefixes(t, l.IfName+" IPv6", gi.IPv6, want6)
	}
}

func comparePrefixes(t *testing.T, what string, got []string, want []netip.Prefix) {
	t.Helper()
	var g []netip.Prefix
	for _, s := range got {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			t.Errorf("%s: %q is not CIDR: %v", what, s, err)
			continue
		}
		g = append(g, p)
	}
	cmpP := func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	}
	if !slices.IsSortedFunc(g, cmpP) {
		t.Errorf("%s: not sorted: %v", what, got)
	}
	slices.SortFunc(want, cmpP)
	if !slices.Equal(g, want) {
		t.Errorf("%s: %v, ip addr %v", what, g, want)
	}
}

// TestHostGatewaysMatchIPRoute: the default gateways equal the gateways of
// `ip -j route show default` and `ip -j -6 route show default`.
func TestHostGatewaysMatchIPRoute(t *testing.T) {
	need(t, "ip")
	var want []string
	for _, fam := range [][]string{{"-j", "route", "show", "default"}, {"-j", "-6", "route", "show", "default"}} {
		var routes []struct {
			Gateway  string `json:"gateway"`
			Dev      string `json:"dev"`
			Type     string `json:"type"`
			Nexthops []struct {
				Gateway string `json:"gateway"`
				Dev     string `json:"dev"`
			} `json:"nexthops"`
		}
		if err := json.Unmarshal([]byte(run(t, "ip", fam...)), &routes); err != nil {
			t.Fatal(err)
		}
		add := func(gw, dev string) {
			if gw == "" {
				return
			}
			if a := netip.MustParseAddr(gw); a.IsLinkLocalUnicast() {
				gw += "%" + dev
			}
			if !slices.Contains(want, gw) {
				want = append(want, gw)
			}
		}
		for _, r := range routes {
			if r.Type != "" && r.Type != "unicast" {
				continue
			}
			add(r.Gateway, r.Dev)
			for _, nh := range r.Nexthops {
				add(nh.Gateway, nh.Dev)
			}
		}
	}
	slices.SortFunc(want, func(a, b string) int { return netip.MustParseAddr(a).Compare(netip.MustParseAddr(b)) })
	got := host().Network(t.Context()).DefaultGateways
	if !slices.Equal(got, want) {
		t.Errorf("default gateways %q, ip route %q", got, want)
	}
}

// TestHostDNSMatchesResolvConf: the DNS servers equal the nameserver lines
// of /etc/resolv.conf as awk reads them (unless it is systemd-resolved's
// stub, which the fake-tree test covers).
func TestHostDNSMatchesResolvConf(t *testing.T) {
	need(t, "awk")
	want := strings.Fields(run(t, "awk", `$1 == "nameserver" && !seen[$2]++ { print $2 }`, "/etc/resolv.conf"))
	if slices.Equal(want, []string{resolvedStub}) {
		t.Skip("resolv.conf is the systemd-resolved stub")
	}
	if got := host().Network(t.Context()).DNSServers; !slices.Equal(got, want) {
		t.Errorf("DNS servers %q, resolv.conf %q", got, want)
	}
}

// TestHostOSMatchesUnameAndUptime: the kernel equals uname -r; the last
// boot (btime) is within 2 s of uptime -s (now minus /proc/uptime, printed
// to the second: rounding on both sides); the OS name is os-release's
// NAME as read by a shell.
func TestHostOSMatchesUnameAndUptime(t *testing.T) {
	o := host().OS(t.Context())
	need(t, "uname")
	if want := strings.TrimSpace(run(t, "uname", "-r")); o.Kernel != want {
		t.Errorf("kernel %q, uname -r %q", o.Kernel, want)
	}
	need(t, "sh")
	if want := strings.TrimSpace(run(t, "sh", "-c", `. /etc/os-release && printf '%s\n%s' "$NAME" "$VERSION_ID"`)); o.Name+"\n"+o.Version != want {
		t.Errorf("name/version %q/%q, os-release via sh %q", o.Name, o.Version, want)
	}
	need(t, "uptime")
	since, err := time.ParseInLocation(time.DateTime, strings.TrimSpace(run(t, "uptime", "-s")), time.Local)
	if err != nil {
		t.Fatal(err)
	}
	if o.LastBoot == nil {
		t.Fatalf("no last boot; notes %q", o.Notes)
	}
	if d := o.LastBoot.Sub(since).Abs(); d > 2*time.Second {
		t.Errorf("last boot %v, uptime -s %v (off by %v)", o.LastBoot, since, d)
	}
}

// TestHostInstallDateMatchesStat: the install date and its method agree
// with stat(1) on the same paths (%W birth, %Y mtime); on this VM the root
// file system's birth time is 0, so the expected answer is nil and a note.
func TestHostInstallDateMatchesStat(t *testing.T) {
	need(t, "stat")
	o := host().OS(t.Context())
	var want *time.Time
	wantNote := "install date unknown: no /var/log/installer or /root/anaconda-ks.cfg, and / has no birth time"
	statTimes := func(p string) (birth, mtime int64) {
		f := strings.Fields(run(t, "stat", "-c", "%W %Y", p))
		birth, _ = strconv.ParseInt(f[0], 10, 64)
		mtime, _ = strconv.ParseInt(f[1], 10, 64)
		return birth, mtime
	}
	found := false
	for _, p := range []string{"/var/log/installer", "/root/anaconda-ks.cfg"} {
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		b, m := statTimes(p)
		if b > 0 {
			want, wantNote = ptime(time.Unix(b, 0)), "install date: birth time of "+p
		} else {
			want, wantNote = ptime(time.Unix(m, 0)), "install date: modification time of "+p
		}
		found = true
		break
	}
	if !found {
		if b, _ := statTimes("/"); b > 0 {
			want, wantNote = ptime(time.Unix(b, 0)), "install date: birth time of / (file system creation; an image build time on cloud images)"
		}
	}
	switch {
	case want == nil && o.InstallDate != nil:
		t.Errorf("install date %v, stat finds none", o.InstallDate)
	case want != nil && (o.InstallDate == nil || o.InstallDate.Truncate(time.Second).Unix() != want.Unix()):
		t.Errorf("install date %v, stat %v", o.InstallDate, want)
	}
	if !slices.Contains(o.Notes, wantNote) {
		t.Errorf("notes %q lack %q", o.Notes, wantNote)
	}
}

// TestHostDMIPresentOrNoted: without /sys/class/dmi/id (this microVM) the
// DMI fields are empty and a single note says so; with it, manufacturer
// and model equal the files as cat(1) prints them.
func TestHostDMIPresentOrNoted(t *testing.T) {
	hw := host().Hardware(t.Context())
	if _, err := os.Stat(dmiDir); err != nil {
		if hw.Manufacturer != "" || hw.Model != "" || hw.SMBIOSUUID != "" || hw.BIOS != (wire.BIOS{}) {
			t.Errorf("DMI fields without DMI: %+v", hw)
		}
		if n := countPrefix(hw.Notes, dmiDir); n != 1 || !strings.HasPrefix(hw.Notes[0], dmiDir+": not present") {
			t.Errorf("want one DMI note, got %q", hw.Notes)
		}
		return
	}
	need(t, "cat")
	if want := strings.TrimSpace(run(t, "cat", dmiDir+"/sys_vendor")); hw.Manufacturer != want {
		t.Errorf("manufacturer %q, sys_vendor %q", hw.Manufacturer, want)
	}
	if want := strings.TrimSpace(run(t, "cat", dmiDir+"/product_name")); hw.Model != want {
		t.Errorf("model %q, product_name %q", hw.Model, want)
	}
}

func countPrefix(ss []string, prefix string) int {
	n := 0
	for _, s := range ss {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

// TestHostPackagesMatchDpkgQuery: the dpkg programs equal, one for one
// (name, version, publisher), the installed entries of dpkg-query. The
// mapping of dpkg-query's ${binary:Package} (which suffixes ":arch" to
// every Multi-Arch: same package) to our names: the bare package name,
// ":arch" appended only when the package is installed for two
// architectures. "Installed" is our rule (status installed, triggers-
// pending or triggers-awaited, error flag ok, any want); the test also
// checks the count of plain "ii" entries, which on a quiet system is the
// same set.
func TestHostPackagesMatchDpkgQuery(t *testing.T) {
	need(t, "dpkg-query")
	out := run(t, "dpkg-query", "-W", "-f=${binary:Package}\t${Package}\t${Architecture}\t${Version}\t${Maintainer}\t${db:Status-Abbrev}\n")
	type row struct{ binPkg, pkg, arch, version, maint string }
	var rows []row
	ii := 0
	archs := map[string]int{}
	for line := range strings.Lines(out) {
		f := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
		if len(f) != 6 {
			t.Fatalf("dpkg-query line %q", line)
		}
		abbrev := f[5]
		if strings.HasPrefix(abbrev, "ii") && strings.TrimSpace(abbrev[2:]) == "" {
			ii++
		}
		if len(abbrev) < 2 || !strings.ContainsRune("itW", rune(abbrev[1])) || strings.TrimSpace(abbrev[2:]) != "" {
			continue
		}
		r := row{f[0], f[1], f[2], f[3], f[4]}
		if bare, arch, ok := strings.Cut(r.binPkg, ":"); ok && (bare != r.pkg || arch != r.arch) {
			t.Fatalf("binary:Package %q is not Package:Architecture %s:%s", r.binPkg, r.pkg, r.arch)
		}
		rows = append(rows, r)
		archs[r.pkg]++
	}
	want := map[string]string{} // name \t version -> publisher
	for _, r := range rows {
		name := r.pkg
		if archs[r.pkg] > 1 {
			name += ":" + r.arch
		}
		want[name+"\t"+r.version] = r.maint
	}

	sw := host().Software(t.Context())
	got := map[string]string{}
	for _, p := range sw.Programs {
		if p.Source == "dpkg" {
			got[p.Name+"\t"+p.Version] = p.Publisher
		}
	}
	if len(got) != len(want) || len(got) != len(rows) {
		t.Errorf("%d dpkg programs, dpkg-query has %d installed (%d rows)", len(got), len(want), len(rows))
	}
	if len(rows) != ii {
		t.Logf("%d installed by our rule, %d plain ii (held or trigger-pending packages present)", len(rows), ii)
	}
	bad := 0
	for k, m := range want {
		if g, ok := got[k]; !ok || g != m {
			if bad++; bad <= 10 {
				t.Errorf("dpkg-query %q (maintainer %q): ours %q present=%v", k, m, g, ok)
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			if bad++; bad <= 20 {
				t.Errorf("program %q not installed per dpkg-query", k)
			}
		}
	}
	if !slices.IsSortedFunc(sw.Programs, func(a, b wire.Program) int {
		return strings.Compare(a.Name+"\x00"+a.Version+"\x00"+a.Source, b.Name+"\x00"+b.Version+"\x00"+b.Source)
	}) {
		t.Error("programs not sorted by (name, version, source)")
	}
	t.Logf("%d dpkg packages compared with dpkg-query (%d ii)", len(want), ii)
}

// BenchmarkFullCollection collects the four sections of this host. Besides
// wall time (ns/op) it reports the process CPU time (user+system, from
// getrusage, GC included) per collection as cpu-ns/op.
func BenchmarkFullCollection(b *testing.B) {
	c := host()
	ctx := b.Context()
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		c.Hardware(ctx)
		c.OS(ctx)
		c.Network(ctx)
		c.Software(ctx)
	}
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
