//go:build !windows

package atomicfile

import "os"

// SyncDir makes a rename in dir durable.
func SyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
