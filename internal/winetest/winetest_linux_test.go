package winetest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCommandRunsGoWindowsBinary cross-compiles a tiny Go program for
// Windows and runs it under Wine: the Go 1.26 runtime starting at all
// proves the ProcessPrng shim is in place, and the exit code must come
// through Wine unchanged.
func TestCommandRunsGoWindowsBinary(t *testing.T) {
	wine64, env := Prefix(t) // skips without Wine
	if wine64 != Wine64 {
		t.Errorf("wine64 = %q", wine64)
	}
	for _, want := range []string{"WINEDEBUG=-all", "WINEPREFIX="} {
		found := false
		for _, kv := range env {
			found = found || strings.HasPrefix(kv, want)
		}
		if !found {
			t.Errorf("environment lacks %s", want)
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not on PATH")
	}
	dir := t.TempDir()
	src := `package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Println("hello from", runtime.GOOS, os.Args[1])
	os.Exit(3)
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "hello.exe")
	build := exec.Command(goBin, "build", "-o", exe, ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("cross-compiling: %v\n%s", err, out)
	}

	cmd := Command(t, exe, "arg1")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("err = %v, want exit status 3 (stdout %q)", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "hello from windows arg1" {
		t.Errorf("stdout = %q", got)
	}
}

func TestRemoveTree(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "tree")
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"x", "a/y", "a/b/z"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := removeTree(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("tree still there: %v", err)
	}
}
