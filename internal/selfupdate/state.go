package selfupdate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kanade-project/kanade/internal/atomicfile"
	"github.com/kanade-project/kanade/internal/release"
)

// MaxFailedBoots is how many boots a freshly swapped version gets to reach
// healthy before it is rolled back.
const MaxFailedBoots = 3

// stateDir holds the updater's files beside the executable: the boot
// sentinel must work before the agent's config (and so its data dir) is
// read, and keeping last-good on the executable's filesystem makes the
// rollback a rename.
func stateDir(exe string) string {
	base := strings.TrimSuffix(filepath.Base(exe), filepath.Ext(exe))
	return filepath.Join(filepath.Dir(exe), base+".update")
}

// bootState is the boot sentinel (boot.json).
type bootState struct {
	Version string `json:"version"`
	// Boots counts starts of Version that have not reached healthy.
	Boots   int  `json:"boots"`
	Healthy bool `json:"healthy"`
}

// lastSwap is written before a swap (last_swap.json).
type lastSwap struct {
	Target        string `json:"target"`
	RunningBefore string `json:"running_before"`
	Nonce         string `json:"nonce"`
}

// loopGuard refuses a target whose binary reported another version.
type loopGuard struct {
	Target   string `json:"target"`
	Reported string `json:"reported"`
	Nonce    string `json:"nonce"`
	Emitted  bool   `json:"emitted"`
}

// rollbackEvent is left by Boot for the running agent to report.
type rollbackEvent struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Boots int    `json:"boots"`
	Nonce string `json:"nonce"`
}

type files struct{ dir string }

func (f files) path(name string) string { return filepath.Join(f.dir, name) }

func (f files) read(name string, v any) (bool, error) {
	b, err := os.ReadFile(f.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("%s: %w", name, err)
	}
	return true, nil
}

func (f files) write(name string, v any) error {
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return atomicfile.Write(f.path(name), b)
}

func (f files) remove(name string) {
	_ = os.Remove(f.path(name))
}

func (f files) quarantine() []string {
	var q []string
	_, _ = f.read("quarantine.json", &q)
	return q
}

func (f files) addQuarantine(v string) error {
	q := f.quarantine()
	if slices.Contains(q, v) {
		return nil
	}
	q = append(q, v)
	slices.Sort(q)
	return f.write("quarantine.json", q)
}

// lastGood is the path of the last binary that ran healthy, and the file
// holding its version.
func (f files) lastGood() (bin, version string) {
	return f.path("last-good.bin"), f.path("last-good.version")
}

// copyFile copies src to dst (fsynced), with mode.
func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// swapIn replaces exe with src: copy to <exe>.new, rename <exe> to
// <exe>.old, rename <exe>.new to <exe>. Windows allows renaming a running
// executable but not deleting it, hence the .old left for the next start.
// On failure the original is put back.
func swapIn(exe, src string) error {
	mode := fs.FileMode(0o755)
	if st, err := os.Stat(exe); err == nil {
		mode = st.Mode().Perm()
	}
	newPath, oldPath := exe+".new", exe+".old"
	_ = os.Remove(newPath)
	_ = os.Remove(oldPath)
	if err := copyFile(src, newPath, mode); err != nil {
		_ = os.Remove(newPath)
		return fmt.Errorf("staging %s: %w", newPath, err)
	}
	if err := os.Rename(exe, oldPath); err != nil {
		_ = os.Remove(newPath)
		return fmt.Errorf("moving the running binary aside: %w", err)
	}
	if err := os.Rename(newPath, exe); err != nil {
		if rerr := os.Rename(oldPath, exe); rerr != nil {
			return fmt.Errorf("installing the new binary: %w; RESTORING THE OLD ONE FAILED: %v", err, rerr)
		}
		return fmt.Errorf("installing the new binary (the old one is back): %w", err)
	}
	atomicfile.SyncDir(filepath.Dir(exe))
	return nil
}

// stagingPath is the file a download of the release object name goes to:
// <dir>/<version>_<os>-<arch>.download. The name is built from KV content
// (target_version), so it is checked again here, where it becomes a path:
// a version release.CheckVersion refuses, or an os or arch that is not a
// plain lowercase word, never gets a file.
func stagingPath(dir, name string) (string, error) {
	version, goos, arch, ok := release.ParseObjectName(name)
	if !ok {
		return "", fmt.Errorf("release name %q is not <version>/<os>-<arch>", name)
	}
	if err := release.CheckVersion(version); err != nil {
		return "", fmt.Errorf("release name %q: %w", name, err)
	}
	for _, w := range []string{goos, arch} {
		for _, c := range []byte(w) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
				return "", fmt.Errorf("release name %q: platform %q is not <os>-<arch> in lowercase letters and digits", name, goos+"-"+arch)
			}
		}
	}
	return filepath.Join(dir, version+"_"+goos+"-"+arch+".download"), nil
}
