//go:build linux

package inventory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kanade-project/kanade/internal/wire"
)

// The Linux collector reads /proc, /sys/class/dmi, /etc, the mount table
// (statfs for sizes) and the package databases, with the standard library
// and x/sys/unix only.
//
// Every file is read at Sources.Root + its absolute path, so tests point it
// at a fake tree. What Root does NOT redirect: the network interfaces (they
// come from the live kernel through net.Interfaces, whatever Root is),
// statfs of the mount points (made at Root + mount point), the rpm binary
// (run with --root Root) and the process's own time zone used as the last
// time-zone fallback.
type linuxCollector struct {
	root string

	// Hooks, replaced by tests. open receives the host path (Root already
	// prepended).
	open          func(name string) (io.ReadCloser, error)
	statfs        func(path string, st *unix.Statfs_t) error
	fileTimes     func(path string) (birth, mtime time.Time, err error)
	interfaces    func() ([]wire.Interface, error)
	lookPath      func(file string) (string, error)
	rpmTimeout    time.Duration
	statfsTimeout time.Duration
}

func newPlatform(src Sources) Collector { return newLinux(src) }

func newLinux(src Sources) *linuxCollector {
	return &linuxCollector{
		root:       src.Root,
		open:       func(name string) (io.ReadCloser, error) { return os.Open(name) },
		statfs:     unix.Statfs,
		fileTimes:  statxTimes,
		interfaces: liveInterfaces,
		lookPath:   exec.LookPath,
		rpmTimeout: 30 * time.Second,
		// Local statfs answers in microseconds; 5 s per mount only
		// matters for a wedged FUSE mount.
		statfsTimeout: 5 * time.Second,
	}
}

// maxSmallFile bounds the reads of /proc, /sys and /etc files: none of them
// is legitimately larger, and a hostile or broken file must not balloon the
// agent.
const maxSmallFile = 1 << 20

// hostPath maps an absolute path to where it lives under Root.
func (c *linuxCollector) hostPath(p string) string { return c.root + p }

// readSmall reads a small text file at Root + p.
func (c *linuxCollector) readSmall(p string) (string, error) {
	f, err := c.open(c.hostPath(p))
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSmallFile))
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// fileNote renders a read failure of the absolute path p (shown without
// Root) as an inventory note.
func fileNote(p string, err error) string {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return p + ": needs root (permission denied)"
	case errors.Is(err, fs.ErrNotExist):
		return p + ": not present"
	}
	// Strip the *PathError wrapper: it repeats the (Root-prefixed) path.
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Sprintf("%s: %v", p, err)
}

// cancelNote is appended when ctx ends a collection early.
func cancelNote(ctx context.Context, what string) string {
	return fmt.Sprintf("%s: collection stopped early: %v", what, context.Cause(ctx))
}

// statxTimes returns the birth time (zero if the file system does not
// record it) and the modification time of path.
func statxTimes(path string) (birth, mtime time.Time, err error) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_BTIME|unix.STATX_MTIME, &st); err != nil {
		return time.Time{}, time.Time{}, &fs.PathError{Op: "statx", Path: path, Err: err}
	}
	if st.Mask&unix.STATX_BTIME != 0 && (st.Btime.Sec != 0 || st.Btime.Nsec != 0) {
		birth = time.Unix(st.Btime.Sec, int64(st.Btime.Nsec)).UTC()
	}
	mtime = time.Unix(st.Mtime.Sec, int64(st.Mtime.Nsec)).UTC()
	return birth, mtime, nil
}
