//go:build !windows

package agentconfig

// DefaultPath is the platform's agent.toml location.
func DefaultPath() string { return "/etc/kanade/agent.toml" }

// DefaultDataDir is the platform's agent data directory.
func DefaultDataDir() string { return "/var/lib/kanade" }

// DefaultLogDir is the platform's agent log directory.
func DefaultLogDir() string { return "/var/log/kanade" }

func platformToken() (string, bool, error) { return "", false, nil }

func tokenHelpSuffix() string { return " (or a root-only EnvironmentFile of the systemd unit)" }

func platformReleaseKeys() (string, bool, error) { return "", false, nil }
