package agentconfig

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/windows/registry"
)

// scratchKey is a fresh path under HKCU, deleted when the test ends: the
// registry readers are exercised there, which needs no administrator
// rights and leaves HKLM alone. The key itself does not exist yet.
func scratchKey(t *testing.T) string {
	t.Helper()
	path := fmt.Sprintf(`Software\KanadeTest-%s-%d-%d`, t.Name(), os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() { _ = registry.DeleteKey(registry.CURRENT_USER, path) })
	return path
}

// createKey creates path (see scratchKey) for the test to set values in.
func createKey(t *testing.T, path string) registry.Key {
	t.Helper()
	k, _, err := registry.CreateKey(registry.CURRENT_USER, path, registry.ALL_ACCESS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// checkRead calls a registry reader and compares its three results: an
// error mentioning wantErr when that is set, else the value and whether
// it was present.
func checkRead[T comparable](t *testing.T, name string, read func() (T, bool, error), want T, wantOK bool, wantErr string) {
	t.Helper()
	got, ok, err := read()
	switch {
	case wantErr != "":
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, wantErr)
		}
	case err != nil:
		t.Errorf("%s: unexpected error %v", name, err)
	case got != want || ok != wantOK:
		t.Errorf("%s: got (%v, %v), want (%v, %v)", name, got, ok, want, wantOK)
	}
}
