// Package fleetclient is the operator side of the protocol, shared by the
// kanade CLI, the backend and the benchmarks: publish a Command to a PC, a
// group or everyone, and collect the ExecResults; ping agents.
//
// Commands are published through JetStream (stream EXEC captures
// commands.>), so a successful Publish means the broker stored the command
// and an agent that is offline now will replay it when it returns. A
// Client with a Signer signs every command it publishes.
// Results are received on a core subscription made before the publish, so
// none can arrive unseen.
package fleetclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/kanade-project/kanade/internal/cmdsign"
	"github.com/kanade-project/kanade/internal/wire"
)

// Client talks to the fleet over one NATS connection.
type Client struct {
	NC *nats.Conn
	JS jetstream.JetStream
	// Signer, when set, signs every command Publish sends: the signature
	// headers cover the exact bytes published, the target and an expiry
	// (see cmdsign). Nil publishes unsigned commands, which endpoints that
	// require signatures refuse with exit 123.
	Signer *cmdsign.Signer
}

// New wraps an existing connection.
func New(nc *nats.Conn) (*Client, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return &Client{NC: nc, JS: js}, nil
}

// Target selects who receives a command: exactly one of its fields is set.
type Target struct {
	PC    string
	Group string
	All   bool
}

// Subject returns the command subject of t, or an error when t is not
// exactly one valid target.
func (t Target) Subject() (string, error) {
	n := 0
	if t.PC != "" {
		n++
	}
	if t.Group != "" {
		n++
	}
	if t.All {
		n++
	}
	if n != 1 {
		return "", errors.New("choose exactly one target: a PC, a group, or all")
	}
	switch {
	case t.All:
		return wire.SubjectCommandsAll, nil
	case t.Group != "":
		if err := wire.CheckToken("group", t.Group); err != nil {
			return "", err
		}
		return wire.SubjectCommandsGroup(t.Group), nil
	default:
		if err := wire.CheckToken("pc", t.PC); err != nil {
			return "", err
		}
		return wire.SubjectCommandsPC(t.PC), nil
	}
}

// Prepare fills the ids of cmd: a fresh request_id per publish, and an
// exec_id equal to it unless one was given.
func Prepare(cmd wire.Command) wire.Command {
	if cmd.RequestID == "" {
		cmd.RequestID = nuid.Next()
	}
	if cmd.ExecID == "" {
		cmd.ExecID = cmd.RequestID
	}
	if cmd.ID == "" {
		cmd.ID = wire.AdhocJobID
	}
	return cmd
}

// Publish stores cmd in EXEC on t's subject and waits for the broker's
// acknowledgement. With a Signer the command carries its signature.
func (c *Client) Publish(ctx context.Context, t Target, cmd wire.Command) error {
	subj, err := t.Subject()
	if err != nil {
		return err
	}
	b, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: subj, Data: b}
	if c.Signer != nil {
		// Signed after marshalling: the signature covers the bytes on the
		// wire, never a re-encoding of them.
		if msg.Header, err = c.Signer.SignCommand(subj, b, cmd.DeadlineAt); err != nil {
			return fmt.Errorf("signing the command for %s: %w", subj, err)
		}
	}
	if _, err := c.JS.PublishMsg(ctx, msg); err != nil {
		if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("publishing to %s: no JetStream stream captures it (run `kanade jetstream setup`): %w", subj, err)
		}
		return fmt.Errorf("publishing to %s: %w", subj, err)
	}
	return nil
}

// Execution is a published command whose results are being collected.
type Execution struct {
	// Command is the command as published, with its ids.
	Command wire.Command
	// Results delivers each ExecResult as it arrives; a payload that does
	// not decode is dropped. It is closed by Close.
	Results <-chan wire.ExecResult

	subs []*nats.Subscription
	done chan struct{}
}

// Close stops collecting results.
func (e *Execution) Close() {
	for _, s := range e.subs {
		_ = s.Unsubscribe()
	}
	close(e.done)
}

// subscribeResults subscribes ch to both result subjects of a request: the
// per-PC form agents publish now and the two-token form of older agents.
func subscribeResults(nc *nats.Conn, requestID string, ch chan *nats.Msg) ([]*nats.Subscription, error) {
	var subs []*nats.Subscription
	for _, subj := range []string{wire.SubjectResultsOfRequest(requestID), wire.SubjectResultsLegacy(requestID)} {
		sub, err := nc.ChanSubscribe(subj, ch)
		if err != nil {
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
			return nil, err
		}
		_ = sub.SetPendingLimits(-1, -1)
		subs = append(subs, sub)
	}
	return subs, nil
}

// Start subscribes to the command's results, then publishes cmd to t.
func (c *Client) Start(ctx context.Context, t Target, cmd wire.Command) (*Execution, error) {
	cmd = Prepare(cmd)
	raw := make(chan *nats.Msg, 4096)
	subs, err := subscribeResults(c.NC, cmd.RequestID, raw)
	if err != nil {
		return nil, err
	}
	if err := c.Publish(ctx, t, cmd); err != nil {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
		return nil, err
	}
	out := make(chan wire.ExecResult, 64)
	e := &Execution{Command: cmd, Results: out, subs: subs, done: make(chan struct{})}
	go func() {
		defer close(out)
		for {
			select {
			case <-e.done:
				return
			case m := <-raw:
				var r wire.ExecResult
				if json.Unmarshal(m.Data, &r) != nil {
					continue
				}
				// Where roles are enforced the subject's pc is the
				// sender's credential; a payload naming another PC is
				// a forgery, not a result.
				if pc, ok := wire.PCFromResultSubject(m.Subject); ok && r.PCID != pc {
					continue
				}
				select {
				case out <- r:
				case <-e.done:
					return
				}
			}
		}
	}()
	return e, nil
}

// Ping asks one agent for a fresh heartbeat.
func (c *Client) Ping(ctx context.Context, pc string) (wire.Heartbeat, error) {
	var hb wire.Heartbeat
	if err := wire.CheckToken("pc", pc); err != nil {
		return hb, err
	}
	m, err := c.NC.RequestWithContext(ctx, wire.SubjectPing(pc), nil)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return hb, fmt.Errorf("no agent %q is connected", pc)
		}
		return hb, err
	}
	if err := json.Unmarshal(m.Data, &hb); err != nil {
		return hb, fmt.Errorf("agent %s answered with an invalid heartbeat: %w", pc, err)
	}
	return hb, nil
}

// Survey asks every connected agent for a heartbeat and collects the
// answers that arrive within window.
func (c *Client) Survey(ctx context.Context, window time.Duration) ([]wire.Heartbeat, error) {
	inbox := c.NC.NewRespInbox()
	ch := make(chan *nats.Msg, 4096)
	sub, err := c.NC.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	_ = sub.SetPendingLimits(-1, -1)
	if err := c.NC.PublishRequest(wire.SubjectSurvey, inbox, nil); err != nil {
		return nil, err
	}
	t := time.NewTimer(window)
	defer t.Stop()
	var out []wire.Heartbeat
	for {
		select {
		case <-ctx.Done():
			return out, nil
		case <-t.C:
			return out, nil
		case m := <-ch:
			var hb wire.Heartbeat
			if json.Unmarshal(m.Data, &hb) == nil && hb.PCID != "" {
				out = append(out, hb)
			}
		}
	}
}

// Output returns the full text of an overflow object (stdout_object or
// stderr_object of a result).
func (c *Client) Output(ctx context.Context, key string) (string, error) {
	obs, err := c.JS.ObjectStore(ctx, wire.ObjectResultOutput)
	if err != nil {
		return "", err
	}
	r, err := obs.Get(ctx, key)
	if err != nil {
		return "", fmt.Errorf("fetching output %s: %w", key, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	return string(b), err
}
