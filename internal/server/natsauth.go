package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-project/kanade/internal/api"
	"github.com/kanade-project/kanade/internal/broker"
	"github.com/kanade-project/kanade/internal/natsauth"
)

// Files of the NKey set-up under <data_dir>/nkeys (mode 0700): the seeds
// are secrets (0600, never logged); agents.json holds public keys only.
const (
	nkeysDir        = "nkeys"
	backendSeedFile = "backend.nk"
	// OperatorSeedFile is the operator's seed: the CLI reads it with
	// --nkey FILE or KANADE_NATS_NKEY.
	OperatorSeedFile = "operator.nk"
	devAgentSeedFile = "dev-agent.nk"
	registryFile     = "agents.json"
)

// NKeysDir is where `kanade server` keeps its NKey set-up under dataDir.
func NKeysDir(dataDir string) string { return filepath.Join(dataDir, nkeysDir) }

// natsAuth is the server's side of [nats] auth = "nkeys": the backend and
// operator keys, the enrolment registry, and (with the embedded broker)
// the broker whose users it keeps in step with the registry. It implements
// api.Credentials.
type natsAuth struct {
	dir         string
	backendSeed []byte
	backend     natsauth.User
	operator    natsauth.User
	registry    *natsauth.Registry
	log         *slog.Logger

	// mu serialises registry changes with broker reloads, so the broker
	// never lags a registry write another request made meanwhile.
	mu     sync.Mutex
	broker *broker.Broker // nil: an external cluster
}

// setupNATSAuth loads the NKey set-up from dataDir, creating the backend
// and operator keys on first start. It logs paths and public keys, never a
// seed.
func setupNATSAuth(dataDir string, log *slog.Logger) (*natsAuth, error) {
	dir := NKeysDir(dataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("server: NKey directory: %w", err)
	}
	a := &natsAuth{dir: dir, log: log}
	for _, k := range []struct {
		file string
		role natsauth.Role
		user *natsauth.User
	}{{backendSeedFile, natsauth.RoleBackend, &a.backend}, {OperatorSeedFile, natsauth.RoleOperator, &a.operator}} {
		path := filepath.Join(dir, k.file)
		seed, pub, created, err := natsauth.LoadOrCreateSeed(path)
		if err != nil {
			return nil, fmt.Errorf("server: %s key: %w", k.role, err)
		}
		*k.user = natsauth.User{Role: k.role, PublicKey: pub}
		if k.role == natsauth.RoleBackend {
			a.backendSeed = seed
		}
		if created {
			log.Info("created the NATS "+string(k.role)+" key", "seed_file", path, "public_key", pub)
		}
	}
	reg, err := natsauth.OpenRegistry(filepath.Join(dir, registryFile))
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	a.registry = reg
	log.Info("NATS roles enforced (nkeys)", "backend", a.backend.PublicKey, "operator", a.operator.PublicKey,
		"operator_seed_file", filepath.Join(dir, OperatorSeedFile), "enrolled_agents", len(reg.List()))
	return a, nil
}

// NATSAuthConfig renders the authorization block of the NKey set-up in
// dataDir, creating the backend and operator keys there first when they
// are missing. It is for an external cluster, whose configuration must
// grant the server its key before the server can connect at all (and so
// before `kanade nats config` can ask the API).
func NATSAuthConfig(dataDir string, log *slog.Logger) (string, error) {
	a, err := setupNATSAuth(dataDir, log)
	if err != nil {
		return "", err
	}
	return a.Config(context.Background())
}

// newNATSAuth returns nil for [nats] auth = "token", else the set-up.
func newNATSAuth(nkeys bool, token, dataDir string, log *slog.Logger) (*natsAuth, error) {
	if !nkeys {
		return nil, nil
	}
	if token != "" {
		return nil, errNKeysWithToken
	}
	return setupNATSAuth(dataDir, log.With("component", "natsauth"))
}

// brokerUsers are the embedded broker's users; nil (token auth) for a nil a.
func (a *natsAuth) brokerUsers() []natsauth.User {
	if a == nil {
		return nil
	}
	return a.users()
}

// clientOptions authenticate the server's own connection.
func (a *natsAuth) clientOptions() ([]nats.Option, error) {
	if a == nil {
		return nil, nil
	}
	opt, err := a.connectOption()
	if err != nil {
		return nil, err
	}
	return []nats.Option{opt}, nil
}

// apiCredentials is a as the API sees it: nil, not a nil pointer in an
// interface, under token auth.
func (a *natsAuth) apiCredentials() api.Credentials {
	if a == nil {
		return nil
	}
	return a
}

// devAgentOptions authenticate the dev agent pc, enrolled (and applied to
// the broker) on first use.
func (a *natsAuth) devAgentOptions(pc string) ([]nats.Option, error) {
	if a == nil {
		return nil, nil
	}
	opt, err := a.devAgent(pc)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.apply(""); err != nil {
		return nil, err
	}
	return []nats.Option{opt}, nil
}

// writeBanner tells the person who started the server how the CLI gets in.
func (a *natsAuth) writeBanner(w io.Writer) {
	if a == nil {
		return
	}
	fmt.Fprintf(w, "NATS roles are enforced ([nats] auth = \"nkeys\"): the CLI authenticates with\n  export %s=%s\nand agents with the seed file of `kanade agent enroll <pc> --out FILE`.\n",
		natsauth.EnvNKey, filepath.Join(a.dir, OperatorSeedFile))
}

// users is every user the broker must know.
func (a *natsAuth) users() []natsauth.User {
	return append([]natsauth.User{a.backend, a.operator}, a.registry.Users()...)
}

// connectOption authenticates the server's own connection as the backend.
func (a *natsAuth) connectOption() (nats.Option, error) {
	opt, _, err := natsauth.Option(a.backendSeed)
	return opt, err
}

// devAgent returns the connection option of the dev agent pc, enrolling
// its key (kept in the data dir, so restarts reuse it) when needed.
func (a *natsAuth) devAgent(pc string) (nats.Option, error) {
	path := filepath.Join(a.dir, devAgentSeedFile)
	seed, pub, _, err := natsauth.LoadOrCreateSeed(path)
	if err != nil {
		return nil, fmt.Errorf("server: dev agent key: %w", err)
	}
	if e, ok := a.registry.Get(pc); !ok || e.PublicKey != pub {
		if err := a.registry.Put(natsauth.Enrollment{PC: pc, PublicKey: pub, EnrolledAt: time.Now().UTC().Truncate(time.Second)}); err != nil {
			return nil, fmt.Errorf("server: enrolling the dev agent: %w", err)
		}
	}
	opt, _, err := natsauth.Option(seed)
	return opt, err
}

// attach makes a apply registry changes to the embedded broker b.
func (a *natsAuth) attach(b *broker.Broker) {
	if a == nil {
		return
	}
	a.mu.Lock()
	a.broker = b
	a.mu.Unlock()
}

// apply pushes the registry to the embedded broker (mu held), or says
// what the operator of an external cluster has to do.
func (a *natsAuth) apply(what string) (api.Applied, error) {
	if a.broker == nil {
		return api.Applied{Instructions: what + " Then reload nats-server on every node (nats-server --signal reload). `kanade nats config` prints the whole authorization block."}, nil
	}
	if err := a.broker.SetUsers(a.users()); err != nil {
		return api.Applied{}, err
	}
	return api.Applied{Live: true}, nil
}

// Enroll implements api.Credentials.
func (a *natsAuth) Enroll(_ context.Context, pc string) (api.Issued, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seed, e, replaced, err := a.registry.Enroll(pc, time.Now())
	if err != nil {
		return api.Issued{}, err
	}
	block, err := natsauth.RenderConfig([]natsauth.User{{Role: natsauth.RoleAgent, PC: pc, PublicKey: e.PublicKey}})
	if err != nil {
		return api.Issued{}, err
	}
	applied, err := a.apply("Add this user to the authorization block of your nats-server configuration" +
		replacedNote(replaced) + ":\n\n" + usersOnly(block) + "\n")
	if err != nil {
		return api.Issued{}, fmt.Errorf("the key of %s is recorded but the broker did not take it (%w); restart the server to apply it", pc, err)
	}
	return api.Issued{Enrollment: e, Seed: string(seed), Replaced: replaced, Applied: applied}, nil
}

func replacedNote(replaced bool) string {
	if replaced {
		return ", replacing the user with this PC's previous key"
	}
	return ""
}

// Revoke implements api.Credentials.
func (a *natsAuth) Revoke(_ context.Context, pc string) (natsauth.Enrollment, api.Applied, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok, err := a.registry.Revoke(pc)
	if err != nil || !ok {
		return e, api.Applied{}, ok, err
	}
	applied, err := a.apply(fmt.Sprintf("Remove the user with nkey %q (agent %s) from the authorization block of your nats-server configuration.", e.PublicKey, pc))
	if err != nil {
		return e, applied, true, fmt.Errorf("%s is revoked in the registry but the broker did not drop it (%w); restart the server to apply it", pc, err)
	}
	return e, applied, true, nil
}

// List implements api.Credentials.
func (a *natsAuth) List(context.Context) ([]natsauth.Enrollment, error) {
	return a.registry.List(), nil
}

// Config implements api.Credentials.
func (a *natsAuth) Config(context.Context) (string, error) {
	return natsauth.RenderConfig(a.users())
}

// usersOnly keeps the user entries of a rendered block (what goes inside
// an existing users = [...] list).
func usersOnly(block string) string {
	lines := strings.Split(block, "\n")
	var out []string
	in := false
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "  users = ["):
			in = true
		case l == "  ]":
			in = false
		case in:
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// errNKeysWithToken explains the one combination nats-server cannot serve.
var errNKeysWithToken = errors.New(`[nats] auth = "nkeys" and a NATS token are both configured: with nkeys every client authenticates with its own key, and nats-server refuses a token next to NKey users. Remove [nats] token_file and unset KANADE_NATS_TOKEN (agents then use nkey_file instead of a token)`)
