//go:build windows

package agentconfig

import (
	"testing"

	"golang.org/x/sys/windows/registry"
)

// The token reader is exercised on a scratch key under HKCU.
func TestRegistryToken(t *testing.T) {
	path := scratchKey(t)
	read := func() (string, bool, error) { return registryToken(registry.CURRENT_USER, "HKCU", path) }
	checkRead(t, "missing key", read, "", false, "")
	k := createKey(t, path)
	checkRead(t, "missing value", read, "", false, "")
	if err := k.SetStringValue(tokenValue, ""); err != nil {
		t.Fatal(err)
	}
	checkRead(t, "empty value", read, "", false, "")
	if err := k.SetStringValue(tokenValue, "s3cr3t token"); err != nil {
		t.Fatal(err)
	}
	checkRead(t, "present", read, "s3cr3t token", true, "")
	if err := k.SetDWordValue(tokenValue, 7); err != nil {
		t.Fatal(err)
	}
	checkRead(t, "wrong type", read, "", false, `HKCU\`+path+`\NatsToken`)
}

// platformToken reads HKLM; with no kanade installation on the test host
// the key is absent, which must be "not configured", not an error.
func TestPlatformTokenAbsent(t *testing.T) {
	if k, err := registry.OpenKey(registry.LOCAL_MACHINE, tokenKey, registry.QUERY_VALUE); err == nil {
		k.Close()
		t.Skip("this host has a real kanade agent key")
	}
	tok, ok, err := platformToken()
	if err != nil || ok || tok != "" {
		t.Errorf("platformToken() = (%q, %v, %v), want not configured", tok, ok, err)
	}
}
