//go:build linux

package inventory

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/kanade-project/kanade/internal/wire"
)

// OS reads os-release(5), the kernel release, the boot time, the time zone
// and the NIS domain; the install date is a best effort with its method in
// a note.
func (c *linuxCollector) OS(ctx context.Context) wire.OSInfo {
	var o wire.OSInfo
	o.Arch = runtime.GOARCH
	if ctx.Err() != nil {
		o.Notes = append(o.Notes, cancelNote(ctx, "os"))
		return o
	}

	c.osRelease(&o)

	const rel = "/proc/sys/kernel/osrelease"
	if s, err := c.readSmall(rel); err != nil {
		o.Notes = append(o.Notes, fileNote(rel, err))
	} else {
		o.Kernel = strings.TrimSpace(s)
	}

	o.LastBoot, o.Notes = c.bootTime(o.Notes)
	o.InstallDate, o.Notes = c.installDate(o.Notes)
	o.TimeZone, o.Notes = c.timeZone(o.Notes)

	const dom = "/proc/sys/kernel/domainname"
	if s, err := c.readSmall(dom); err != nil {
		o.Notes = append(o.Notes, fileNote(dom, err))
	} else if s = strings.TrimSpace(s); s != "(none)" {
		o.Domain = s
	}
	// Workgroup is a Windows notion: empty.
	return o
}

func (c *linuxCollector) osRelease(o *wire.OSInfo) {
	// os-release(5): /etc/os-release, else /usr/lib/os-release.
	var (
		data string
		err  error
	)
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		if data, err = c.readSmall(p); err == nil {
			break
		}
	}
	if err != nil {
		o.Notes = append(o.Notes, fileNote("/etc/os-release", err))
		o.Name = "Linux" // the os-release(5) default for NAME
		return
	}
	kv := parseOSRelease(data)
	o.Name = kv["NAME"]
	if o.Name == "" {
		o.Name = kv["PRETTY_NAME"]
	}
	if o.Name == "" {
		o.Name = "Linux"
	}
	o.Version = kv["VERSION_ID"]
	if o.Version == "" {
		o.Version = kv["VERSION"]
	}
	o.Build = kv["BUILD_ID"]
	if o.Build == "" {
		o.Build = kv["VERSION_CODENAME"]
	}
}

// parseOSRelease parses the shell-compatible KEY=value assignments of
// os-release(5): values may be bare, 'single' or "double" quoted, with \",
// \\, \$ and \` escapes inside double quotes.
func parseOSRelease(data string) map[string]string {
	kv := map[string]string{}
	for line := range strings.Lines(data) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		kv[strings.TrimSpace(k)] = unquoteShell(strings.TrimSpace(v))
	}
	return kv
}

func unquoteShell(v string) string {
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		return v[1 : len(v)-1]
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
		if !strings.Contains(v, `\`) {
			return v
		}
		var b strings.Builder
		for i := 0; i < len(v); i++ {
			if v[i] == '\\' && i+1 < len(v) && strings.IndexByte("\"\\$`", v[i+1]) >= 0 {
				i++
			}
			b.WriteByte(v[i])
		}
		return b.String()
	}
	return v
}

func (c *linuxCollector) bootTime(notes []string) (*time.Time, []string) {
	const p = "/proc/stat"
	data, err := c.readSmall(p)
	if err != nil {
		return nil, append(notes, fileNote(p, err))
	}
	for line := range strings.Lines(data) {
		if rest, ok := strings.CutPrefix(line, "btime "); ok {
			sec, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
			if err != nil || sec <= 0 {
				return nil, append(notes, p+": unparsable btime")
			}
			t := time.Unix(sec, 0).UTC()
			return &t, notes
		}
	}
	return nil, append(notes, p+": no btime")
}

// installDate tries, in order: the Debian/Ubuntu installer's log directory,
// Anaconda's kickstart file (RHEL, Fedora), then the birth time of the root
// directory (mkfs time, i.e. the install or the image build). The mtime of
// / is NOT used: it moves whenever an entry is added to / and says nothing
// about the install.
func (c *linuxCollector) installDate(notes []string) (*time.Time, []string) {
	for _, p := range []string{"/var/log/installer", "/root/anaconda-ks.cfg"} {
		birth, mtime, err := c.fileTimes(c.hostPath(p))
		if err != nil {
			continue
		}
		if !birth.IsZero() {
			return &birth, append(notes, "install date: birth time of "+p)
		}
		return &mtime, append(notes, "install date: modification time of "+p)
	}
	if birth, _, err := c.fileTimes(c.hostPath("/")); err == nil && !birth.IsZero() {
		return &birth, append(notes, "install date: birth time of / (file system creation; an image build time on cloud images)")
	}
	return nil, append(notes, "install date unknown: no /var/log/installer or /root/anaconda-ks.cfg, and / has no birth time")
}

// timeZone prefers the /etc/localtime symlink (what glibc actually uses),
// then Debian's /etc/timezone (can be stale: timedatectl does not update
// it), then the zone abbreviation of this process.
func (c *linuxCollector) timeZone(notes []string) (string, []string) {
	if target, err := os.Readlink(c.hostPath("/etc/localtime")); err == nil {
		if _, name, ok := strings.Cut(target, "zoneinfo/"); ok && name != "" {
			name = strings.TrimPrefix(name, "posix/")
			name = strings.TrimPrefix(name, "right/")
			return name, notes
		}
	}
	const p = "/etc/timezone"
	s, err := c.readSmall(p)
	if err == nil {
		if s = strings.TrimSpace(s); s != "" {
			return s, notes
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		notes = append(notes, fileNote(p, err))
	}
	name, _ := time.Now().Zone()
	return name, append(notes, "time zone: /etc/localtime is not a zoneinfo link and /etc/timezone is absent; abbreviation of the agent process's zone")
}
