package agentconfig

import (
	"fmt"

	"github.com/kanade-project/kanade/internal/natsauth"
)

// NKeySeed returns this agent's NATS NKey seed, for brokers with per-role
// permissions ([nats] auth = "nkeys" on the server): on Windows the
// registry value HKLM\SOFTWARE\Kanade\Agent\NatsNkeySeed first, else the
// file named by [agent] nkey_file (which must not be readable by group or
// others), else none (nil, "", nil). source says where it came from, for
// logs; the seed itself is never logged. A configured seed that cannot be
// read or parsed is an error: connecting without it would only fail later,
// and less clearly.
func (c *Config) NKeySeed() (seed []byte, source string, err error) {
	if s, ok, err := platformNKeySeed(); err != nil {
		return nil, "", err
	} else if ok {
		if _, err := natsauth.ParseSeed([]byte(s)); err != nil {
			return nil, "", fmt.Errorf("the NKey seed in the registry value %s: %w", nkeyRegistryName, err)
		}
		return []byte(s), "registry", nil
	}
	if c.Agent.NKeyFile == "" {
		return nil, "", nil
	}
	seed, err = natsauth.ReadSeedFile(c.Agent.NKeyFile)
	if err != nil {
		return nil, "", fmt.Errorf("[agent] nkey_file: %w", err)
	}
	return seed, c.Agent.NKeyFile, nil
}

// nkeyRegistryName is where Windows endpoints keep the seed.
const nkeyRegistryName = `HKLM\SOFTWARE\Kanade\Agent\NatsNkeySeed`

func nkeyHelp() string {
	return "With NATS roles (server [nats] auth = \"nkeys\"), the agent's NKey seed comes from [agent] nkey_file" + nkeyHelpSuffix() + " (kanade agent enroll <pc> --out FILE)."
}
