//go:build !windows

package cmdsign

import (
	"fmt"
	"os"
)

// checkPrivate refuses a private key file that group or others can read.
func checkPrivate(path string, st os.FileInfo) error {
	if m := st.Mode().Perm(); m&0o077 != 0 {
		return fmt.Errorf("command key file %s is accessible by group or others (mode %v): it must be private to you; run chmod 600 %s", path, m, path)
	}
	return nil
}
