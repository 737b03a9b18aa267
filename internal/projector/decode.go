package projector

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/store"
	"github.com/kanade-project/kanade/internal/wire"
)

// errIgnored marks a message of a projected stream that this version does
// not project (for example an events.<kind> other than started). It is
// acked and counted apart from decode errors.
var errIgnored = errors.New("not projected")

// forgedError is a message whose payload pc_id disagrees with the pc token
// of its subject. The subject is what NATS permissions bind to an agent's
// credential (an agent may publish heartbeat.<its pc> and nothing else), so
// the payload is the lie: the message is refused, never stored under
// either name. It is acked (it can never succeed), counted and logged with
// security=true.
type forgedError struct{ subjectPC, payloadPC string }

func (e *forgedError) Error() string {
	return fmt.Sprintf("payload pc_id %q disagrees with the subject's pc %q", e.payloadPC, e.subjectPC)
}

// bindPC makes *payloadPC the subject's pc: filled when empty, a
// *forgedError when it names another PC.
func bindPC(subjectPC string, payloadPC *string) error {
	switch *payloadPC {
	case subjectPC:
	case "":
		*payloadPC = subjectPC
	default:
		return &forgedError{subjectPC: subjectPC, payloadPC: *payloadPC}
	}
	return nil
}

// Missing times are filled from the message's stream timestamp: a replay
// sees the same timestamp, so the rebuilt row is identical.

func decodeResult(m jetstream.Msg, meta *jetstream.MsgMetadata) (func(*store.Tx) error, error) {
	var r wire.ExecResult
	if err := json.Unmarshal(m.Data(), &r); err != nil {
		return nil, err
	}
	// results.<request_id>.<pc>; the legacy results.<request_id> of
	// older agents names no pc (and no agent role may publish on it).
	if pc, ok := wire.PCFromResultSubject(m.Subject()); ok {
		if err := bindPC(pc, &r.PCID); err != nil {
			return nil, err
		}
	}
	if r.FinishedAt.IsZero() {
		r.FinishedAt = meta.Timestamp.UTC()
	}
	if err := store.CheckResult(r); err != nil {
		return nil, err
	}
	seq := meta.Sequence.Stream
	return func(tx *store.Tx) error { return tx.UpsertResult(r, seq) }, nil
}

func decodeEvent(m jetstream.Msg, meta *jetstream.MsgMetadata) (func(*store.Tx) error, error) {
	// events.started.<exec_id>.<pc>
	rest, ok := strings.CutPrefix(m.Subject(), "events.started.")
	if !ok {
		return nil, errIgnored
	}
	var e wire.EventStarted
	if err := json.Unmarshal(m.Data(), &e); err != nil {
		return nil, err
	}
	if exec, pc, ok := strings.Cut(rest, "."); ok {
		if e.ExecID == "" {
			e.ExecID = exec
		}
		if pc != "" {
			if err := bindPC(pc, &e.PCID); err != nil {
				return nil, err
			}
		}
	}
	if e.StartedAt.IsZero() {
		e.StartedAt = meta.Timestamp.UTC()
	}
	if err := store.CheckStarted(e); err != nil {
		return nil, err
	}
	return func(tx *store.Tx) error { return tx.AddStarted(e) }, nil
}

func decodeObs(m jetstream.Msg, meta *jetstream.MsgMetadata) (func(*store.Tx) error, error) {
	var e wire.ObsEvent
	if err := json.Unmarshal(m.Data(), &e); err != nil {
		return nil, err
	}
	if pc, ok := wire.PCFromSubject(m.Subject(), "obs"); ok {
		if err := bindPC(pc, &e.PCID); err != nil {
			return nil, err
		}
	}
	if e.At.IsZero() {
		e.At = meta.Timestamp.UTC()
	}
	if err := store.CheckObs(e); err != nil {
		return nil, err
	}
	seq := meta.Sequence.Stream
	return func(tx *store.Tx) error { return tx.AddTimeline(e, seq) }, nil
}

func decodeInventory(m jetstream.Msg, meta *jetstream.MsgMetadata) (func(*store.Tx) error, error) {
	var v wire.InventoryMessage
	if err := json.Unmarshal(m.Data(), &v); err != nil {
		return nil, err
	}
	// inventory.<pc>.<section>
	if rest, ok := strings.CutPrefix(m.Subject(), "inventory."); ok {
		if pc, section, ok := strings.Cut(rest, "."); ok && pc != "" && section != "" {
			if err := bindPC(pc, &v.PCID); err != nil {
				return nil, err
			}
			v.Section = section
		}
	}
	if v.CollectedAt.IsZero() {
		v.CollectedAt = meta.Timestamp.UTC()
	}
	if err := store.CheckInventory(v); err != nil {
		return nil, err
	}
	return func(tx *store.Tx) error { return tx.ApplyInventory(v) }, nil
}

func decodeAudit(m jetstream.Msg, meta *jetstream.MsgMetadata) (func(*store.Tx) error, error) {
	var e wire.AuditEvent
	if err := json.Unmarshal(m.Data(), &e); err != nil {
		return nil, err
	}
	if e.At.IsZero() {
		e.At = meta.Timestamp.UTC()
	}
	if err := store.CheckAudit(e); err != nil {
		return nil, err
	}
	seq := meta.Sequence.Stream
	return func(tx *store.Tx) error { return tx.AddAudit(e, seq) }, nil
}
