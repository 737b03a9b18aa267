//go:build !windows

package agentconfig

func platformNKeySeed() (string, bool, error) { return "", false, nil }

func nkeyHelpSuffix() string { return ", a root-only file (mode 0600)" }
