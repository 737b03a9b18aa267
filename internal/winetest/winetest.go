// Package winetest lets tests exercise kanade's Windows code from Linux
// through Wine.
//
// Two ways are supported. Whole test packages run as Windows binaries with
// go test's -exec flag:
//
//	GOOS=windows GOARCH=amd64 go test -exec "$PWD/test/wine/exec.sh" ./internal/runner/
//
// and a Linux test can start a Windows .exe it built with Prefix or Command.
// Both use test/wine/setup.sh, which prepares a private Wine prefix (by
// default ~/.cache/kanade-wine, or $KANADE_WINEPREFIX) with the
// bcryptprimitives.dll shim that Go 1.26 binaries need on Wine 8.
//
// Tests that run under Wine use TempDir instead of t.TempDir: see there.
package winetest

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Wine64 is where Debian's wine64 package puts the 64-bit loader.
const Wine64 = "/usr/lib/wine/wine64"

// mingwCC builds the bcryptprimitives.dll shim.
const mingwCC = "x86_64-w64-mingw32-gcc"

const installHint = "apt-get install wine64 gcc-mingw-w64-x86-64 (.ci/run does this)"

// setup runs test/wine/setup.sh at most once per test process: it is cheap
// after the first time but still a fork and a hash, and every test of a
// package would otherwise pay it.
var setup = sync.OnceValues(func() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	script := filepath.Join(root, "test", "wine", "setup.sh")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("bash", script)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w\n%s", script, err, stderr.String())
	}
	lines := strings.Fields(strings.TrimSpace(stdout.String()))
	if len(lines) == 0 {
		return "", fmt.Errorf("%s printed no prefix path", script)
	}
	return lines[len(lines)-1], nil
})

// repoRoot walks up from the working directory (go test runs a package's
// tests in its directory) to the directory holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("locating the repository: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("locating the repository: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Prefix returns the wine64 loader and the environment to run a Windows
// .exe with it (the current environment plus WINEPREFIX and WINEDEBUG=-all).
// It skips the test when Wine or the MinGW compiler is not installed, and
// fails it when the prefix cannot be prepared.
func Prefix(t testing.TB) (wine64 string, env []string) {
	t.Helper()
	if _, err := os.Stat(Wine64); err != nil {
		t.Skipf("wine64 not installed: %s", installHint)
	}
	if _, err := exec.LookPath(mingwCC); err != nil {
		t.Skipf("%s not installed, needed for the Wine prefix: %s", mingwCC, installHint)
	}
	prefix, err := setup()
	if err != nil {
		t.Fatalf("preparing the Wine prefix: %v", err)
	}
	env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		// A display would let Wine open windows on a developer's desktop;
		// the variables set below must not be duplicated.
		for _, k := range []string{"WINEPREFIX=", "WINEDEBUG=", "WINEDLLOVERRIDES=", "DISPLAY=", "WAYLAND_DISPLAY="} {
			if strings.HasPrefix(kv, k) {
				return true
			}
		}
		return false
	})
	env = append(env, "WINEPREFIX="+prefix, "WINEDEBUG=-all", "WINEDLLOVERRIDES=mscoree,mshtml=")
	return Wine64, env
}

// Command returns an exec.Cmd that runs the Windows executable exe with args
// under Wine; see Prefix for when it skips.
func Command(t testing.TB, exe string, args ...string) *exec.Cmd {
	t.Helper()
	wine64, env := Prefix(t)
	cmd := exec.Command(wine64, append([]string{exe}, args...)...)
	cmd.Env = env
	return cmd
}

// TempDir is t.TempDir for tests that run under Wine. Go 1.26's
// os.RemoveAll on Windows deletes through NtSetInformationFile with
// FileDispositionInformationEx; Wine 8 answers STATUS_NOT_IMPLEMENTED, which
// Go does not treat as "fall back to the old way", so t.TempDir's cleanup
// fails every test with "unlinkat ...: Invalid function". This one removes
// the tree entry by entry with os.Remove (DeleteFile/RemoveDirectory), which
// Wine supports. It behaves the same on real Windows and on Linux.
func TempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kanade-test-")
	if err != nil {
		t.Fatalf("TempDir: %v", err)
	}
	t.Cleanup(func() {
		if err := removeTree(dir); err != nil {
			t.Errorf("TempDir cleanup: %v", err)
		}
	})
	return dir
}

func removeTree(root string) error {
	var paths []string
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return err
	}
	// WalkDir lists a directory before its contents: reversed, every
	// directory is empty by the time it is removed.
	var errs []error
	for _, p := range slices.Backward(paths) {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
