package agentconfig

import (
	"fmt"
	"testing"

	"golang.org/x/sys/windows/registry"
)

// RequireSignedCommands is read from a scratch key under HKCU.
func TestRegistryRequireSigned(t *testing.T) {
	path := scratchKey(t)
	read := func() (bool, bool, error) { return registryRequireSigned(registry.CURRENT_USER, "HKCU", path) }
	checkRead(t, "missing key", read, false, false, "")
	k := createKey(t, path)
	checkRead(t, "missing value", read, false, false, "")
	for _, tc := range []struct {
		v    uint32
		want bool
	}{{0, false}, {1, true}} {
		if err := k.SetDWordValue("RequireSignedCommands", tc.v); err != nil {
			t.Fatal(err)
		}
		checkRead(t, fmt.Sprint(tc.v), read, tc.want, true, "")
	}
	if err := k.SetDWordValue("RequireSignedCommands", 2); err != nil {
		t.Fatal(err)
	}
	checkRead(t, "2", read, false, false, "expected a REG_DWORD 0 or 1")
	if err := k.SetStringValue("RequireSignedCommands", "1"); err != nil {
		t.Fatal(err)
	}
	checkRead(t, "a string", read, false, false, "REG_DWORD")
}
