package agentconfig

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/windows/registry"
)

// RequireSignedCommands is read from a scratch key under HKCU, which needs
// no administrator rights and leaves HKLM alone.
func TestRegistryRequireSigned(t *testing.T) {
	path := fmt.Sprintf(`Software\KanadeTest-%d-%d`, os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() { _ = registry.DeleteKey(registry.CURRENT_USER, path) })
	check := func(name string, want, wantOK bool, wantErr string) {
		t.Helper()
		v, ok, err := registryRequireSigned(registry.CURRENT_USER, "HKCU", path)
		switch {
		case wantErr != "":
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("%s: err = %v, want it to mention %q", name, err, wantErr)
			}
		case err != nil:
			t.Errorf("%s: unexpected error %v", name, err)
		case v != want || ok != wantOK:
			t.Errorf("%s: got (%v, %v), want (%v, %v)", name, v, ok, want, wantOK)
		}
	}
	check("missing key", false, false, "")
	k, _, err := registry.CreateKey(registry.CURRENT_USER, path, registry.ALL_ACCESS)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	check("missing value", false, false, "")
	for _, tc := range []struct {
		v    uint32
		want bool
	}{{0, false}, {1, true}} {
		if err := k.SetDWordValue("RequireSignedCommands", tc.v); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprint(tc.v), tc.want, true, "")
	}
	if err := k.SetDWordValue("RequireSignedCommands", 2); err != nil {
		t.Fatal(err)
	}
	check("2", false, false, "expected a REG_DWORD 0 or 1")
	if err := k.SetStringValue("RequireSignedCommands", "1"); err != nil {
		t.Fatal(err)
	}
	check("a string", false, false, "REG_DWORD")
}
