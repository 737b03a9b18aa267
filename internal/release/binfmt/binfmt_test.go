package binfmt

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// platforms are built once per test binary (go build is cached anyway).
var platforms = []string{
	"linux/amd64", "linux/arm64", "linux/386", "linux/arm",
	"windows/amd64", "darwin/arm64", "freebsd/amd64", "android/arm64",
}

var (
	buildOnce sync.Once
	buildDir  string
	built     map[string]string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// binaries builds a tiny Go program for every platform (in parallel, once)
// and returns the path of each.
func binaries(t *testing.T) map[string]string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "binfmt-test-")
		if buildErr != nil {
			return
		}
		src := filepath.Join(buildDir, "src")
		if buildErr = os.MkdirAll(src, 0o755); buildErr != nil {
			return
		}
		if buildErr = os.WriteFile(filepath.Join(src, "go.mod"), []byte("module tiny\n\ngo 1.26\n"), 0o644); buildErr != nil {
			return
		}
		if buildErr = os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nfunc main() { println(\"tiny\") }\n"), 0o644); buildErr != nil {
			return
		}
		built = map[string]string{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		var errs []error
		for _, p := range platforms {
			goos, goarch, _ := strings.Cut(p, "/")
			out := filepath.Join(buildDir, goos+"-"+goarch)
			built[p] = out
			wg.Go(func() {
				cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
				cmd.Dir = src
				cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
				if b, err := cmd.CombinedOutput(); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("go build %s: %v\n%s", p, err, b))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		buildErr = errors.Join(errs...)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

func TestDetectGoBinaries(t *testing.T) {
	bins := binaries(t)
	for _, p := range platforms {
		t.Run(strings.ReplaceAll(p, "/", "-"), func(t *testing.T) {
			goos, goarch, err := Detect(bins[p])
			if err != nil {
				t.Fatal(err)
			}
			if got := goos + "/" + goarch; got != p {
				t.Errorf("Detect = %s, want %s", got, p)
			}
		})
	}
}

// patched copies the linux/amd64 binary and changes bytes of its header.
func patched(t *testing.T, off int, b ...byte) string {
	t.Helper()
	data, err := os.ReadFile(binaries(t)["linux/amd64"])
	if err != nil {
		t.Fatal(err)
	}
	copy(data[off:], b)
	p := filepath.Join(t.TempDir(), "patched")
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDetectRefuses(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	linux, err := os.ReadFile(binaries(t)["linux/amd64"])
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		want    string
		notExec bool
	}{
		{"text file", write("notes.txt", []byte("just some text\n")), "not an executable: expected an ELF, PE or Mach-O binary", true},
		{"empty file", write("empty", nil), "not an executable", true},
		{"shell script", write("run.sh", []byte("#!/bin/sh\necho hi\n")), "not an executable", true},
		{"text starting with MZ", write("mz.txt", []byte("MZ is not a PE file, just letters\n")), "not an executable", true},
		{"java class file", write("A.class", []byte{0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 0x34, 0, 0x10}), "not an executable", true},
		{"truncated ELF", write("truncated", linux[:40]), "malformed ELF", false},
		// e_type (offset 16) = ET_REL: an object file, not a program.
		{"ELF object file", patched(t, 16, 1, 0), "not an executable", false},
		// e_machine (offset 18) = EM_SPARCV9: no Go port.
		{"unsupported machine", patched(t, 18, 43, 0), "unsupported machine", false},
		// EI_OSABI (offset 7) = FreeBSD, but the Go build info says linux.
		{"header contradicts build info (os)", patched(t, 7, byte(9)), "GOOS=linux", false},
		// e_machine = EM_AARCH64, but the Go build info says amd64.
		{"header contradicts build info (arch)", patched(t, 18, 183, 0), "GOARCH=amd64", false},
		{"missing file", filepath.Join(dir, "absent"), "no such file", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			goos, goarch, err := Detect(tt.path)
			if err == nil {
				t.Fatalf("Detect = %s/%s, want an error containing %q", goos, goarch, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) && !(tt.want == "no such file" && errors.Is(err, os.ErrNotExist)) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if got := errors.Is(err, ErrNotExecutable); got != tt.notExec {
				t.Errorf("errors.Is(err, ErrNotExecutable) = %v, want %v (%v)", got, tt.notExec, err)
			}
			if !strings.Contains(err.Error(), tt.path) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}
