// Package atomicfile writes files so that a crash (power loss, kill -9)
// leaves either the old content or the new one, never a torn file: write a
// temp file in the same directory, fsync it, rename it over the target,
// fsync the directory.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// TempPrefix starts the name of every temp file this package creates, so
// that directory scans can skip or clean them.
const TempPrefix = ".tmp-"

// Write atomically replaces path with data (mode 0600).
func Write(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), TempPrefix+filepath.Base(path))
	if err := WriteSync(tmp, data); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("atomicfile: %w", err)
	}
	SyncDir(filepath.Dir(path))
	return nil
}

// WriteNoSync replaces path with data by write and rename, without fsync:
// a process crash still leaves the old or the new content (the page cache
// survives it), only an OS crash or power loss may lose the new content.
// For records whose loss is harmless but whose tearing is not.
func WriteNoSync(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), TempPrefix+filepath.Base(path))
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("atomicfile: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("atomicfile: %w", err)
	}
	return nil
}

// WriteSync writes data to path and fsyncs it, without the rename.
func WriteSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	if _, err := f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("atomicfile: writing %s: %w", filepath.Base(path), err)
	}
	return nil
}
