package broker

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/kanade-project/kanade/internal/natsauth"
)

// ErrTokenWithUsers is returned when both a token and NKey users are
// configured: nats-server would silently ignore the token, and a client
// still presenting it would be refused with no hint why.
var ErrTokenWithUsers = errors.New("broker: a NATS token and NKey users cannot be combined: with [nats] auth = \"nkeys\" remove token_file and unset KANADE_NATS_TOKEN (every client then authenticates with its NKey)")

// applyUsers puts o.Users into the server options.
func applyUsers(sopts *server.Options, o Options) error {
	if len(o.Users) == 0 {
		return nil
	}
	if o.Token != "" {
		return ErrTokenWithUsers
	}
	users, err := nkeyUsers(o.Users)
	if err != nil {
		return err
	}
	sopts.Nkeys = users
	return nil
}

// nkeyUsers converts the role table into nats-server users, refusing an
// incomplete user or a public key listed twice (nats-server would keep
// only one of them, with the other's permissions lost).
func nkeyUsers(users []natsauth.User) ([]*server.NkeyUser, error) {
	out := make([]*server.NkeyUser, 0, len(users))
	seen := map[string]string{}
	for _, u := range users {
		if err := u.Check(); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
		if other, dup := seen[u.PublicKey]; dup {
			return nil, fmt.Errorf("broker: %s and %s share the public key %s", other, u.Name(), u.PublicKey)
		}
		seen[u.PublicKey] = u.Name()
		out = append(out, &server.NkeyUser{Nkey: u.PublicKey, Permissions: ServerPermissions(u.Permissions())})
	}
	return out, nil
}

// ServerPermissions converts a role's permissions into nats-server's.
func ServerPermissions(p natsauth.Permissions) *server.Permissions {
	sp := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: p.Publish.Allow, Deny: p.Publish.Deny},
		Subscribe: &server.SubjectPermission{Allow: p.Subscribe.Allow, Deny: p.Subscribe.Deny},
	}
	if p.AllowResponses {
		// Zero values take the server's defaults: one reply per request,
		// within two minutes.
		sp.Response = &server.ResponsePermission{}
	}
	return sp
}

// SetUsers replaces the NKey users of a broker started with Users, without
// a restart: clients whose key is no longer listed are disconnected at
// once (and refused when they reconnect); every other client keeps its
// connection, with its permissions re-applied.
//
// Re-applying permissions makes nats-server forget the requests a client
// may still answer (allow_responses): a reply an agent sends in the
// instant after a reload, to a request it received before it, is refused
// once, and its requester times out and asks again. Enrolment and
// revocation are rare; agents answer within milliseconds.
func (b *Broker) SetUsers(users []natsauth.User) error {
	if len(users) == 0 {
		return errors.New("broker: SetUsers needs at least one user (an empty list would open the broker to everyone)")
	}
	nk, err := nkeyUsers(users)
	if err != nil {
		return err
	}
	b.optsMu.Lock()
	defer b.optsMu.Unlock()
	if b.opts.Nkeys == nil {
		return errors.New("broker: this broker was started without NKey users ([nats] auth = \"token\"); restart it with auth = \"nkeys\"")
	}
	next := b.opts.Clone()
	next.Nkeys = nk
	if err := b.srv.ReloadOptions(next); err != nil {
		return fmt.Errorf("broker: reloading users: %w", err)
	}
	b.opts = next
	return nil
}
