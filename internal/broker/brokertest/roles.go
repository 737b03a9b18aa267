package brokertest

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-project/kanade/internal/natsauth"
)

// Roles is the NKey set-up of a broker started by StartWithRoles: one
// backend and one operator user, and the agents enrolled so far. Connect
// authenticates as the backend.
type Roles struct {
	BackendSeed, OperatorSeed []byte

	mu    sync.Mutex
	fixed []natsauth.User
	// agents maps pc to its public key.
	agents map[string]string
}

func (r *Roles) users() []natsauth.User {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.fixed)
	for pc, pub := range r.agents {
		out = append(out, natsauth.User{Role: natsauth.RoleAgent, PC: pc, PublicKey: pub})
	}
	return out
}

func (r *Roles) backend(t testing.TB) []nats.Option {
	if r == nil {
		return nil
	}
	return []nats.Option{SeedOption(t, r.BackendSeed)}
}

// StartWithRoles starts a broker whose clients authenticate with NKeys
// and are held to their role's permissions (internal/natsauth), bootstraps
// every kanade resource as the backend, and stops it when the test ends.
func StartWithRoles(t testing.TB) *Server {
	t.Helper()
	r := &Roles{agents: map[string]string{}}
	for _, role := range []natsauth.Role{natsauth.RoleBackend, natsauth.RoleOperator} {
		seed, pub, err := natsauth.NewUser()
		if err != nil {
			t.Fatal(err)
		}
		r.fixed = append(r.fixed, natsauth.User{Role: role, PublicKey: pub})
		if role == natsauth.RoleBackend {
			r.BackendSeed = seed
		} else {
			r.OperatorSeed = seed
		}
	}
	s := &Server{t: t, dataDir: t.TempDir(), listen: freeAddr(t), roles: r}
	s.Restart()
	t.Cleanup(s.Stop)
	Bootstrap(t, s)
	return s
}

// Roles returns the NKey set-up of a broker started by StartWithRoles.
func (s *Server) Roles() *Roles { return s.roles }

// EnrollAgent mints an agent key for pc, adds it to the running broker and
// returns its seed. Enrolling pc again replaces its key.
func (s *Server) EnrollAgent(t testing.TB, pc string) []byte {
	t.Helper()
	seed, pub, err := natsauth.NewUser()
	if err != nil {
		t.Fatal(err)
	}
	s.roles.mu.Lock()
	s.roles.agents[pc] = pub
	s.roles.mu.Unlock()
	s.reloadUsers(t)
	return seed
}

// RevokeAgent removes pc's key from the running broker.
func (s *Server) RevokeAgent(t testing.TB, pc string) {
	t.Helper()
	s.roles.mu.Lock()
	delete(s.roles.agents, pc)
	s.roles.mu.Unlock()
	s.reloadUsers(t)
}

func (s *Server) reloadUsers(t testing.TB) {
	t.Helper()
	if s.B == nil {
		return // applied at the next Restart
	}
	if err := s.B.SetUsers(s.roles.users()); err != nil {
		t.Fatal(err)
	}
}

// ConnectAs opens a connection authenticated by seed (and nothing else),
// closed at the end of the test.
func (s *Server) ConnectAs(t testing.TB, seed []byte, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond), SeedOption(t, seed)}, opts...)
	nc, err := nats.Connect(s.URL(), opts...)
	if err != nil {
		t.Fatalf("brokertest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// SeedOption is the connection option authenticating with seed.
func SeedOption(t testing.TB, seed []byte) nats.Option {
	t.Helper()
	opt, _, err := natsauth.Option(seed)
	if err != nil {
		t.Fatal(err)
	}
	return opt
}
