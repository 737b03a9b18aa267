package agentconfig

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/windows/registry"
)

// The seed reader is exercised on a scratch key under HKCU, which needs no
// administrator rights and leaves HKLM alone.
func TestRegistryNKeySeed(t *testing.T) {
	path := fmt.Sprintf(`Software\KanadeTest-nkey-%d-%d`, os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() { _ = registry.DeleteKey(registry.CURRENT_USER, path) })
	check := func(name, want string, wantOK bool, wantErr string) {
		t.Helper()
		got, ok, err := registryNKeySeed(registry.CURRENT_USER, "HKCU", path)
		switch {
		case wantErr != "":
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("%s: err = %v, want %q", name, err, wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", name, err)
		case got != want || ok != wantOK:
			t.Errorf("%s: got (%q, %v), want (%q, %v)", name, got, ok, want, wantOK)
		}
	}
	check("missing key", "", false, "")
	k, _, err := registry.CreateKey(registry.CURRENT_USER, path, registry.ALL_ACCESS)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	check("missing value", "", false, "")
	if err := k.SetStringValue(nkeyValue, "  SUEXAMPLE\r\n"); err != nil {
		t.Fatal(err)
	}
	check("present, trimmed", "SUEXAMPLE", true, "")
	if err := k.SetDWordValue(nkeyValue, 7); err != nil {
		t.Fatal(err)
	}
	check("wrong type", "", false, `HKCU\`+path+`\NatsNkeySeed`)
}
