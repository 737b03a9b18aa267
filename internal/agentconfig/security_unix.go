//go:build !windows

package agentconfig

import (
	"fmt"
	"os"
	"syscall"
)

func platformCommandKeys() (string, bool, error) { return "", false, nil }

func platformRequireSignedCommands() (bool, bool, error) { return false, false, nil }

// checkRingFile refuses a ring that someone other than root or the agent's
// own account could have written: adding a line to it would let them sign
// commands that run as root on this machine.
func checkRingFile(path string, st os.FileInfo) error {
	if !st.Mode().IsRegular() {
		return fmt.Errorf("[security] command_keys_file %s is not a regular file", path)
	}
	if m := st.Mode().Perm(); m&0o022 != 0 {
		return fmt.Errorf("[security] command_keys_file %s is writable by group or others (mode %v): run chmod go-w %s", path, m, path)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		if uid := int(sys.Uid); uid != 0 && uid != os.Geteuid() {
			return fmt.Errorf("[security] command_keys_file %s is owned by uid %d, not by root or the agent's account (uid %d): run chown root %s", path, uid, os.Geteuid(), path)
		}
	}
	return nil
}

// fileStamp includes the inode: a ring replaced by rename within the same
// clock tick and with the same size is still noticed.
func fileStamp(st os.FileInfo) string {
	s := fmt.Sprintf("%d/%d/%v", st.Size(), st.ModTime().UnixNano(), st.Mode())
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		s += fmt.Sprintf("/%d/%d/%d", sys.Dev, sys.Ino, sys.Uid)
	}
	return s
}
