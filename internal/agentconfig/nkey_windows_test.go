package agentconfig

import (
	"testing"

	"golang.org/x/sys/windows/registry"
)

// The seed reader is exercised on a scratch key under HKCU.
func TestRegistryNKeySeed(t *testing.T) {
	path := scratchKey(t)
	read := func() (string, bool, error) { return registryNKeySeed(registry.CURRENT_USER, "HKCU", path) }
	checkRead(t, "missing key", read, "", false, "")
	k := createKey(t, path)
	checkRead(t, "missing value", read, "", false, "")
	if err := k.SetStringValue(nkeyValue, "  SUEXAMPLE\r\n"); err != nil {
		t.Fatal(err)
	}
	checkRead(t, "present, trimmed", read, "SUEXAMPLE", true, "")
	if err := k.SetDWordValue(nkeyValue, 7); err != nil {
		t.Fatal(err)
	}
	checkRead(t, "wrong type", read, "", false, `HKCU\`+path+`\NatsNkeySeed`)
}
