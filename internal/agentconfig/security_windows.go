package agentconfig

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/windows/registry"
)

// platformCommandKeys reads the command key ring from the REG_MULTI_SZ (or
// REG_SZ) value CommandKeys of HKLM\SOFTWARE\Kanade\Agent, one key line per
// string, like ReleaseKeys.
func platformCommandKeys() (string, bool, error) {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, tokenKey, registry.QUERY_VALUE|registry.WOW64_64KEY)
	if errors.Is(err, registry.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading command keys from HKLM\\%s: %w", tokenKey, err)
	}
	defer k.Close()
	if lines, _, err := k.GetStringsValue("CommandKeys"); err == nil {
		return strings.Join(lines, "\n"), len(lines) > 0, nil
	}
	v, _, err := k.GetStringValue("CommandKeys")
	if errors.Is(err, registry.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading HKLM\\%s\\CommandKeys (REG_MULTI_SZ or REG_SZ): %w", tokenKey, err)
	}
	return v, v != "", nil
}

// platformRequireSignedCommands reads the REG_DWORD RequireSignedCommands
// (0 or 1) of HKLM\SOFTWARE\Kanade\Agent; absent means "not set here".
func platformRequireSignedCommands() (bool, bool, error) {
	return registryRequireSigned(registry.LOCAL_MACHINE, "HKLM", tokenKey)
}

func registryRequireSigned(root registry.Key, rootName, path string) (bool, bool, error) {
	k, err := registry.OpenKey(root, path, registry.QUERY_VALUE|registry.WOW64_64KEY)
	if errors.Is(err, registry.ErrNotExist) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("reading %s\\%s\\RequireSignedCommands: %w", rootName, path, err)
	}
	defer k.Close()
	v, _, err := k.GetIntegerValue("RequireSignedCommands")
	if errors.Is(err, registry.ErrNotExist) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("reading %s\\%s\\RequireSignedCommands (expected a REG_DWORD 0 or 1): %w", rootName, path, err)
	}
	switch v {
	case 0:
		return false, true, nil
	case 1:
		return true, true, nil
	}
	return false, false, fmt.Errorf("%s\\%s\\RequireSignedCommands is %d: expected a REG_DWORD 0 or 1", rootName, path, v)
}

// checkRingFile has no mode bits to check on Windows: the file's ACL (the
// config directory under %ProgramData%\Kanade, writable by administrators
// only) protects it.
func checkRingFile(string, os.FileInfo) error { return nil }

func fileStamp(st os.FileInfo) string {
	return fmt.Sprintf("%d/%d", st.Size(), st.ModTime().UnixNano())
}
