//go:build linux

package inventory

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kanade-project/kanade/internal/wire"
)

const dmiDir = "/sys/class/dmi/id"

// Hardware reads DMI (SMBIOS as exported by the kernel), /proc/cpuinfo,
// /proc/meminfo and the mounted block-device file systems.
func (c *linuxCollector) Hardware(ctx context.Context) wire.Hardware {
	var hw wire.Hardware
	if ctx.Err() != nil {
		hw.Notes = append(hw.Notes, cancelNote(ctx, "hardware"))
		return hw
	}
	c.dmi(&hw)
	hw.CPU, hw.Notes = c.cpu(hw.Notes)
	hw.RAMBytes, hw.Notes = c.memTotal(hw.Notes)
	hw.Disks, hw.Notes = c.disks(ctx, hw.Notes)
	return hw
}

func (c *linuxCollector) dmi(hw *wire.Hardware) {
	if _, err := os.Stat(c.hostPath(dmiDir)); errors.Is(err, fs.ErrNotExist) {
		// One note, not seven: the whole table is absent (no SMBIOS, as on
		// most ARM boards and on microVMs such as Firecracker).
		hw.Notes = append(hw.Notes, dmiDir+": not present (no SMBIOS/DMI tables): manufacturer, model, serial, UUID and BIOS unknown")
		return
	}
	fields := []struct {
		name string
		dst  *string
	}{
		{"sys_vendor", &hw.Manufacturer},
		{"product_name", &hw.Model},
		{"product_serial", &hw.Serial},   // 0400: root only
		{"product_uuid", &hw.SMBIOSUUID}, // 0400: root only
		{"bios_vendor", &hw.BIOS.Vendor},
		{"bios_version", &hw.BIOS.Version},
		{"bios_date", &hw.BIOS.ReleaseDate},
	}
	for _, f := range fields {
		p := dmiDir + "/" + f.name
		s, err := c.readSmall(p)
		if err != nil {
			hw.Notes = append(hw.Notes, fileNote(p, err))
			continue
		}
		*f.dst = strings.TrimSpace(s)
	}
	hw.BIOS.ReleaseDate = isoBIOSDate(hw.BIOS.ReleaseDate)
}

// isoBIOSDate turns SMBIOS's MM/DD/YYYY into YYYY-MM-DD; anything else is
// kept as the firmware wrote it.
func isoBIOSDate(s string) string {
	if t, err := time.Parse("01/02/2006", s); err == nil {
		return t.Format(time.DateOnly)
	}
	return s
}

// cpuInfo is what /proc/cpuinfo (and, as a fallback, sysfs) says about the
// processors.
type cpuInfo struct {
	model   string
	logical int
	// ids holds one (physical id, core id) pair per processor entry, or is
	// nil when any entry lacks one of them.
	ids [][2]string
	// processors lists the "processor" numbers, for the sysfs fallback.
	processors []string
}

func parseCPUInfo(data string) cpuInfo {
	var ci cpuInfo
	fallbacks := map[string]string{}
	var (
		implementer, part string
		pid, cid          string
		havePID, haveCID  bool
		inEntry, complete = false, true
	)
	flush := func() {
		if !inEntry {
			return
		}
		if havePID && haveCID && complete {
			ci.ids = append(ci.ids, [2]string{pid, cid})
		} else {
			complete = false
		}
		inEntry, havePID, haveCID = false, false, false
	}
	for line := range strings.Lines(data) {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			if strings.TrimSpace(line) == "" {
				flush()
			}
			continue
		}
		key = strings.TrimSpace(key)
		val = strings.TrimSpace(val)
		switch key {
		case "processor":
			flush()
			inEntry = true
			ci.logical++
			ci.processors = append(ci.processors, val)
		case "physical id":
			pid, havePID = val, true
		case "core id":
			cid, haveCID = val, true
		case "model name":
			if ci.model == "" {
				ci.model = val
			}
		case "Processor", "cpu model", "cpu", "uarch":
			// Older 32-bit ARM, MIPS, POWER, RISC-V.
			if _, seen := fallbacks[key]; !seen {
				fallbacks[key] = val
			}
		case "CPU implementer":
			if implementer == "" {
				implementer = val
			}
		case "CPU part":
			if part == "" {
				part = val
			}
		}
	}
	flush()
	if !complete || len(ci.ids) != ci.logical {
		ci.ids = nil
	}
	if ci.model == "" {
		for _, k := range []string{"Processor", "cpu model", "cpu", "uarch"} {
			if v := fallbacks[k]; v != "" {
				ci.model = v
				break
			}
		}
	}
	if ci.model == "" && implementer != "" {
		ci.model = armModel(implementer, part)
	}
	return ci
}

// armModel names an arm64 core from the MIDR fields the kernel prints
// (lscpu carries the full tables; the vendor and the part number are
// enough to group a fleet).
func armModel(implementer, part string) string {
	vendors := map[string]string{
		"0x41": "ARM", "0x42": "Broadcom", "0x43": "Cavium", "0x46": "Fujitsu",
		"0x48": "HiSilicon", "0x4e": "NVIDIA", "0x50": "APM", "0x51": "Qualcomm",
		"0x53": "Samsung", "0x61": "Apple", "0x6d": "Microsoft", "0xc0": "Ampere",
	}
	v, ok := vendors[strings.ToLower(implementer)]
	if !ok {
		v = "implementer " + implementer
	}
	if part == "" {
		return v
	}
	return v + " part " + part
}

func (c *linuxCollector) cpu(notes []string) (wire.CPU, []string) {
	var out wire.CPU
	const p = "/proc/cpuinfo"
	data, err := c.readSmall(p)
	if err != nil {
		return out, append(notes, fileNote(p, err))
	}
	ci := parseCPUInfo(data)
	out.Model = ci.model
	out.LogicalProcessors = ci.logical
	if out.Model == "" {
		notes = append(notes, p+": no model name")
	}

	// /proc/cpuinfo lists online processors only; glibc (and so nproc
	// --all, sysconf(_SC_NPROCESSORS_CONF)) counts /sys/devices/system/cpu/cpuN.
	if n := c.sysfsCPUCount(); n > out.LogicalProcessors {
		if out.LogicalProcessors == 0 {
			notes = append(notes, p+": no processor entries; logical processors counted in /sys/devices/system/cpu")
		} else {
			notes = append(notes, fmt.Sprintf("%d of %d logical processors are offline (count from /sys/devices/system/cpu)", n-out.LogicalProcessors, n))
		}
		out.LogicalProcessors = n
	}

	switch {
	case ci.ids != nil:
		out.Sockets, out.Cores = countTopology(ci.ids)
	default:
		if ids, ok := c.sysfsTopology(ci.processors); ok {
			out.Sockets, out.Cores = countTopology(ids)
			notes = append(notes, p+`: no "physical id"/"core id"; sockets and cores from /sys/devices/system/cpu/cpu*/topology`)
		} else if out.LogicalProcessors > 0 {
			out.Sockets, out.Cores = 1, out.LogicalProcessors
			notes = append(notes, p+`: no "physical id"/"core id" and no sysfs topology; assuming 1 socket and one core per logical processor`)
		}
	}
	return out, notes
}

func countTopology(ids [][2]string) (sockets, cores int) {
	sock := map[string]struct{}{}
	core := map[[2]string]struct{}{}
	for _, id := range ids {
		sock[id[0]] = struct{}{}
		core[id] = struct{}{}
	}
	return len(sock), len(core)
}

// sysfsCPUCount counts the cpuN directories of /sys/devices/system/cpu
// (present processors, online or not); 0 if unreadable.
func (c *linuxCollector) sysfsCPUCount() int {
	ents, err := os.ReadDir(c.hostPath("/sys/devices/system/cpu"))
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if rest, ok := strings.CutPrefix(e.Name(), "cpu"); ok && rest != "" && isDigits(rest) {
			n++
		}
	}
	return n
}

// sysfsTopology reads physical_package_id and core_id of each listed
// processor from sysfs.
func (c *linuxCollector) sysfsTopology(processors []string) ([][2]string, bool) {
	if len(processors) == 0 {
		return nil, false
	}
	ids := make([][2]string, 0, len(processors))
	for _, n := range processors {
		if !isDigits(n) {
			return nil, false
		}
		dir := "/sys/devices/system/cpu/cpu" + n + "/topology/"
		pkg, err1 := c.readSmall(dir + "physical_package_id")
		core, err2 := c.readSmall(dir + "core_id")
		if err1 != nil || err2 != nil {
			return nil, false
		}
		pkg = strings.TrimSpace(pkg)
		if pkg == "-1" { // "unknown" on older arm64 kernels: one package
			pkg = "0"
		}
		ids = append(ids, [2]string{pkg, strings.TrimSpace(core)})
	}
	return ids, true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// memTotal returns MemTotal of /proc/meminfo in bytes (what free -b calls
// total: physical RAM minus what the firmware and kernel reserved).
func (c *linuxCollector) memTotal(notes []string) (uint64, []string) {
	const p = "/proc/meminfo"
	data, err := c.readSmall(p)
	if err != nil {
		return 0, append(notes, fileNote(p, err))
	}
	for line := range strings.Lines(data) {
		rest, ok := strings.CutPrefix(line, "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) >= 1 {
			if v, err := strconv.ParseUint(f[0], 10, 64); err == nil {
				mult := uint64(1)
				if len(f) >= 2 && f[1] == "kB" {
					mult = 1024
				}
				return v * mult, notes
			}
		}
		return 0, append(notes, p+": unparsable MemTotal line")
	}
	return 0, append(notes, p+": no MemTotal")
}

// diskFS lists the file systems that live on a local block device (or a
// pool of them). Everything else in the mount table (proc, sysfs, tmpfs,
// devtmpfs, overlay, squashfs, cgroup*, nsfs, network file systems, …) is
// not a volume an admin sizes.
var diskFS = map[string]bool{
	"ext2": true, "ext3": true, "ext4": true, "xfs": true, "btrfs": true,
	"bcachefs": true, "zfs": true, "f2fs": true, "jfs": true, "reiserfs": true,
	"nilfs2": true, "vfat": true, "msdos": true, "exfat": true, "ntfs": true,
	"ntfs3": true, "fuseblk": true, "hfs": true, "hfsplus": true, "apfs": true,
	"ufs": true, "ocfs2": true, "gfs2": true,
}

type mountEntry struct{ source, target, fstype string }

// parseMounts parses /proc/self/mounts (fstab format, octal escapes for
// blanks and backslashes).
func parseMounts(data string) []mountEntry {
	var out []mountEntry
	for line := range strings.Lines(data) {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		out = append(out, mountEntry{unescapeMount(f[0]), unescapeMount(f[1]), f[2]})
	}
	return out
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func (c *linuxCollector) disks(ctx context.Context, notes []string) ([]wire.Disk, []string) {
	const p = "/proc/self/mounts"
	data, err := c.readSmall(p)
	if err != nil {
		return nil, append(notes, fileNote(p, err))
	}
	var out []wire.Disk
	seen := map[string]bool{}
	for _, m := range parseMounts(data) {
		if !diskFS[m.fstype] || seen[m.source] {
			continue
		}
		if ctx.Err() != nil {
			notes = append(notes, cancelNote(ctx, "disks"))
			break
		}
		seen[m.source] = true
		d := wire.Disk{ID: m.source, Mount: m.target, FileSystem: m.fstype}
		st, err := c.statfsBounded(ctx, c.hostPath(m.target))
		if err != nil {
			notes = append(notes, fmt.Sprintf("statfs %s (%s): %v", m.target, m.source, unwrapPath(err)))
		} else {
			// df's arithmetic: the fragment size (f_frsize, falling back to
			// f_bsize) times f_blocks and f_bavail (free to non-root users).
			bs := uint64(st.Frsize)
			if bs == 0 {
				bs = uint64(st.Bsize)
			}
			d.SizeBytes = st.Blocks * bs
			d.FreeBytes = st.Bavail * bs
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b wire.Disk) int { return strings.Compare(a.ID, b.ID) })
	return out, notes
}

// statfsBounded runs statfs with a deadline: statfs of a wedged FUSE
// mount (ntfs-3g is fuseblk) blocks in the kernel, and one such mount must
// not stall the inventory. On timeout the goroutine stays blocked until
// the kernel answers; nothing else waits for it.
func (c *linuxCollector) statfsBounded(ctx context.Context, path string) (unix.Statfs_t, error) {
	type result struct {
		st  unix.Statfs_t
		err error
	}
	done := make(chan result, 1)
	go func() {
		var st unix.Statfs_t
		err := c.statfs(path, &st)
		done <- result{st, err}
	}()
	timer := time.NewTimer(c.statfsTimeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.st, r.err
	case <-ctx.Done():
		return unix.Statfs_t{}, context.Cause(ctx)
	case <-timer.C:
		return unix.Statfs_t{}, fmt.Errorf("no answer within %v (hung FUSE or network mount?)", c.statfsTimeout)
	}
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
