package agentcmd

import (
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/kanade-project/kanade/internal/agentconfig"
)

// natsTLSOptions turns [agent] nats_ca_file and nats_pin_sha256 into
// connection options: none when neither is set.
func natsTLSOptions(cfg *agentconfig.Config, log *slog.Logger) ([]nats.Option, error) {
	tc, err := cfg.NATSTLS()
	if err != nil || tc == nil {
		return nil, err
	}
	log.Info("TLS to the broker required", "ca_file", cfg.Agent.NATSCAFile, "pins", len(cfg.Agent.NATSPins))
	return []nats.Option{nats.Secure(tc)}, nil
}
