package broker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-project/kanade/internal/broker"
	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/natsauth"
)

// TestRevokingOneAgentLeavesTheOthersConnected: SetUsers without pc-a
// closes pc-a's connection and refuses its reconnects, while pc-b's
// connection is never interrupted.
func TestRevokingOneAgentLeavesTheOthersConnected(t *testing.T) {
	srv := brokertest.StartWithRoles(t)
	seedA, seedB := srv.EnrollAgent(t, "pc-a"), srv.EnrollAgent(t, "pc-b")

	type events struct{ disconnected, refused chan error }
	watch := func(seed []byte) (*nats.Conn, events) {
		ev := events{disconnected: make(chan error, 16), refused: make(chan error, 16)}
		nc := srv.ConnectAs(t, seed,
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { ev.disconnected <- err }),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				if errors.Is(err, nats.ErrAuthorization) {
					ev.refused <- err
				}
			}))
		return nc, ev
	}
	ncA, evA := watch(seedA)
	ncB, evB := watch(seedB)
	// pc-b is busy when pc-a is revoked: its subscription must survive.
	sub, err := ncB.SubscribeSync("agents.pc-b.ping")
	if err != nil {
		t.Fatal(err)
	}
	if err := ncB.Flush(); err != nil {
		t.Fatal(err)
	}

	srv.RevokeAgent(t, "pc-a")

	select {
	case <-evA.disconnected:
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked agent was not disconnected")
	}
	for i := range 2 {
		select {
		case <-evA.refused:
		case <-time.After(10 * time.Second):
			t.Fatalf("reconnect %d of the revoked agent was not refused", i+1)
		}
	}
	if ncA.IsConnected() {
		t.Fatal("the revoked agent is connected")
	}

	// pc-b: same connection, never dropped, still served.
	op := srv.ConnectAs(t, srv.Roles().OperatorSeed)
	go func() {
		if m, err := sub.NextMsg(10 * time.Second); err == nil {
			_ = m.Respond([]byte("pong"))
		}
	}()
	if m, err := op.Request("agents.pc-b.ping", nil, 10*time.Second); err != nil || string(m.Data) != "pong" {
		t.Fatalf("pc-b after pc-a's revocation: %v", err)
	}
	select {
	case err := <-evB.disconnected:
		t.Fatalf("pc-b was disconnected: %v", err)
	default:
	}
	if s := ncB.Stats(); s.Reconnects != 0 {
		t.Fatalf("pc-b reconnected %d times", s.Reconnects)
	}
}

func TestUsersConfigurationErrors(t *testing.T) {
	_, pub, err := natsauth.NewUser()
	if err != nil {
		t.Fatal(err)
	}
	backend := natsauth.User{Role: natsauth.RoleBackend, PublicKey: pub}
	for _, tc := range []struct {
		name string
		o    broker.Options
		err  string
	}{
		{"token and users", broker.Options{Token: "s3cret", Users: []natsauth.User{backend}}, "a NATS token and NKey users cannot be combined"},
		{"a key twice", broker.Options{Users: []natsauth.User{backend, {Role: natsauth.RoleAgent, PC: "pc-a", PublicKey: pub}}}, "backend and agent pc-a share the public key"},
		{"an incomplete user", broker.Options{Users: []natsauth.User{{Role: natsauth.RoleAgent, PublicKey: pub}}}, "agent pc_id is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.DataDir, tc.o.Listen = t.TempDir(), "127.0.0.1:0"
			b, err := broker.Start(context.Background(), tc.o)
			if err == nil {
				b.Shutdown()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
		})
	}

	// A token broker cannot be switched to users live, and no broker can
	// be left with no user at all.
	b, err := broker.Start(context.Background(), broker.Options{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	if err := b.SetUsers([]natsauth.User{backend}); err == nil || !strings.Contains(err.Error(), `restart it with auth = "nkeys"`) {
		t.Fatalf("SetUsers on a token broker: %v", err)
	}
	if err := b.SetUsers(nil); err == nil || !strings.Contains(err.Error(), "at least one user") {
		t.Fatalf("SetUsers(nil): %v", err)
	}
}
