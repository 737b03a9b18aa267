package cli

import (
	"os"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/kanade-project/kanade/internal/natsauth"
)

// EnvNKey names the operator's NKey seed file (see --nkey).
const EnvNKey = natsauth.EnvNKey

// addNKeyFlag adds --nkey to the root command.
func (a *app) addNKeyFlag(root *cobra.Command) {
	root.PersistentFlags().StringVar(&a.nkeyFile, "nkey", "", "`FILE` holding the operator's NKey seed, for a broker with [nats] auth = \"nkeys\" (env "+EnvNKey+"; kanade server creates <data_dir>/nkeys/operator.nk); mode 0600, never the seed itself on the command line")
}

// nkeyOptions authenticate the CLI's NATS connection with the operator's
// seed when --nkey or KANADE_NATS_NKEY names one.
func (a *app) nkeyOptions() ([]nats.Option, error) {
	path := a.nkeyFile
	if path == "" {
		path = os.Getenv(EnvNKey)
	}
	if path == "" {
		return nil, nil
	}
	seed, err := natsauth.ReadSeedFile(path)
	if err != nil {
		return nil, &exitError{code: exitUsage, msg: err.Error() + " (--nkey / " + EnvNKey + " name the operator's seed file)"}
	}
	opt, _, err := natsauth.Option(seed)
	if err != nil {
		return nil, &exitError{code: exitUsage, msg: err.Error()}
	}
	return []nats.Option{opt}, nil
}
