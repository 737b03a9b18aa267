//go:build windows

package agentconfig

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/windows/registry"
)

// The token reader is exercised on a scratch key under HKCU, which needs no
// administrator rights and leaves HKLM alone.
func TestRegistryToken(t *testing.T) {
	path := fmt.Sprintf(`Software\KanadeTest-%d-%d`, os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() { _ = registry.DeleteKey(registry.CURRENT_USER, path) })

	check := func(name, wantTok string, wantOK bool, wantErr string) {
		t.Helper()
		tok, ok, err := registryToken(registry.CURRENT_USER, "HKCU", path)
		switch {
		case wantErr != "":
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("%s: err = %v, want it to mention %q", name, err, wantErr)
			}
		case err != nil:
			t.Errorf("%s: unexpected error %v", name, err)
		case tok != wantTok || ok != wantOK:
			t.Errorf("%s: got (%q, %v), want (%q, %v)", name, tok, ok, wantTok, wantOK)
		}
	}

	check("missing key", "", false, "")
	k, _, err := registry.CreateKey(registry.CURRENT_USER, path, registry.ALL_ACCESS)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	check("missing value", "", false, "")
	if err := k.SetStringValue(tokenValue, ""); err != nil {
		t.Fatal(err)
	}
	check("empty value", "", false, "")
	if err := k.SetStringValue(tokenValue, "s3cr3t token"); err != nil {
		t.Fatal(err)
	}
	check("present", "s3cr3t token", true, "")
	if err := k.SetDWordValue(tokenValue, 7); err != nil {
		t.Fatal(err)
	}
	check("wrong type", "", false, `HKCU\`+path+`\NatsToken`)
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
