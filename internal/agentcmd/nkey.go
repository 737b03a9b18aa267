package agentcmd

import (
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/kanade-project/kanade/internal/agentconfig"
	"github.com/kanade-project/kanade/internal/natsauth"
)

// nkeyOptions authenticate the agent with its NKey seed when one is
// configured (registry value or [agent] nkey_file); none otherwise. ok is
// false when a configured seed is unusable: the agent must not start
// without the identity it was given.
func nkeyOptions(cfg *agentconfig.Config, logger *slog.Logger) (opts []nats.Option, ok bool) {
	seed, source, err := cfg.NKeySeed()
	if err != nil {
		logger.Error("reading the NATS NKey seed", "err", err)
		return nil, false
	}
	if seed == nil {
		return nil, true
	}
	opt, pub, err := natsauth.Option(seed)
	if err != nil {
		logger.Error("the NATS NKey seed is unusable", "seed_from", source, "err", err)
		return nil, false
	}
	logger.Info("authenticating to NATS with an NKey", "public_key", pub, "seed_from", source)
	return []nats.Option{opt}, true
}
