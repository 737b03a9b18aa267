package agentcmd

import (
	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/agentconfig"
)

// commandSigning turns [security] (or the registry) into the agent's
// signed-command settings. The ring is read by the agent itself, so a
// missing or damaged ring fails closed there instead of stopping the
// daemon: it keeps heartbeating and says why it refuses every command.
func commandSigning(cfg *agentconfig.Config) (*agent.CommandSigning, error) {
	require, keys, err := cfg.CommandSigning()
	if err != nil {
		return nil, err
	}
	cs := &agent.CommandSigning{Require: require}
	if keys != nil {
		cs.Keys = keys
	}
	return cs, nil
}
