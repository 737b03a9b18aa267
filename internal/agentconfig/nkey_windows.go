package agentconfig

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/windows/registry"
)

// nkeyValue is the REG_SZ value holding the agent's NKey seed, next to the
// NATS token under HKLM\SOFTWARE\Kanade\Agent, where an ACL limits it to
// SYSTEM and administrators and no config backup or process list shows it.
const nkeyValue = "NatsNkeySeed"

// platformNKeySeed reads HKLM\SOFTWARE\Kanade\Agent\NatsNkeySeed. A missing
// key or value (or an empty one) means "not configured here", so [agent]
// nkey_file applies; any other failure is an error.
func platformNKeySeed() (string, bool, error) {
	return registryNKeySeed(registry.LOCAL_MACHINE, "HKLM", tokenKey)
}

func registryNKeySeed(root registry.Key, rootName, path string) (string, bool, error) {
	k, err := registry.OpenKey(root, path, registry.QUERY_VALUE|registry.WOW64_64KEY)
	if errors.Is(err, registry.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading the NKey seed from %s\\%s: %w", rootName, path, err)
	}
	defer k.Close()
	v, _, err := k.GetStringValue(nkeyValue)
	if errors.Is(err, registry.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading the NKey seed from %s\\%s\\%s (a REG_SZ value): %w", rootName, path, nkeyValue, err)
	}
	v = strings.TrimSpace(v)
	return v, v != "", nil
}

func nkeyHelpSuffix() string {
	return ` or, first, the registry value HKLM\SOFTWARE\Kanade\Agent\NatsNkeySeed`
}
