package agentconfig

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/windows/registry"
)

func programData() string {
	if p := os.Getenv("ProgramData"); p != "" {
		return p
	}
	return `C:\ProgramData`
}

// DefaultPath is the platform's agent.toml location.
func DefaultPath() string { return filepath.Join(programData(), "Kanade", "config", "agent.toml") }

// DefaultDataDir is the platform's agent data directory.
func DefaultDataDir() string { return filepath.Join(programData(), "Kanade", "data") }

// DefaultLogDir is the platform's agent log directory.
func DefaultLogDir() string { return filepath.Join(programData(), "Kanade", "logs") }

// tokenKey and tokenValue locate the NATS token in the registry, where an
// ACL can limit it to SYSTEM and administrators and no config backup or
// process list shows it.
const (
	tokenKey   = `SOFTWARE\Kanade\Agent`
	tokenValue = "NatsToken"
)

// platformToken reads HKLM\SOFTWARE\Kanade\Agent\NatsToken. A missing key
// or value (or an empty one) means "not configured here", so the
// environment variable applies; anything else, such as access denied or a
// value of the wrong type, is an error: silently connecting without the
// token would only fail later and less clearly.
func platformToken() (string, bool, error) {
	return registryToken(registry.LOCAL_MACHINE, `HKLM`, tokenKey)
}

func registryToken(root registry.Key, rootName, path string) (string, bool, error) {
	// WOW64_64KEY: a 32-bit build on 64-bit Windows must read the same
	// value the installer wrote, not the WOW6432Node copy.
	k, err := registry.OpenKey(root, path, registry.QUERY_VALUE|registry.WOW64_64KEY)
	if errors.Is(err, registry.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading the NATS token from %s\\%s: %w", rootName, path, err)
	}
	defer k.Close()
	v, _, err := k.GetStringValue(tokenValue)
	if errors.Is(err, registry.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading the NATS token from %s\\%s\\%s (a REG_SZ value): %w", rootName, path, tokenValue, err)
	}
	if v == "" {
		return "", false, nil
	}
	return v, true, nil
}

func tokenHelpSuffix() string {
	return ` or, first, the registry value HKLM\SOFTWARE\Kanade\Agent\NatsToken`
}

// platformReleaseKeys reads the release key ring from the REG_MULTI_SZ (or
// REG_SZ) value ReleaseKeys of HKLM\SOFTWARE\Kanade\Agent: one key line per
// string. Deployment tools set it alongside the token.
func platformReleaseKeys() (string, bool, error) {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, tokenKey, registry.QUERY_VALUE|registry.WOW64_64KEY)
	if errors.Is(err, registry.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading release keys from HKLM\\%s: %w", tokenKey, err)
	}
	defer k.Close()
	if lines, _, err := k.GetStringsValue("ReleaseKeys"); err == nil {
		return strings.Join(lines, "\n"), len(lines) > 0, nil
	}
	v, _, err := k.GetStringValue("ReleaseKeys")
	if errors.Is(err, registry.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading HKLM\\%s\\ReleaseKeys: %w", tokenKey, err)
	}
	return v, v != "", nil
}
