package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/outbox"
	"github.com/kanade-project/kanade/internal/wire"
)

// jsPublisher is the outbox's connection to JetStream.
type jsPublisher struct {
	nc *nats.Conn
	js jetstream.JetStream
	// pc completes a result queued by an agent before results carried the
	// pc_id (results.<request_id>): where roles are enforced that subject
	// is denied to every agent, and the entry would be stuck for good.
	pc string

	mu      sync.Mutex
	objects map[string]jetstream.ObjectStore
}

func (p *jsPublisher) Publish(ctx context.Context, subject, msgID string, data []byte) error {
	if !p.nc.IsConnected() {
		return outbox.ErrUnavailable
	}
	if p.pc != "" && strings.HasPrefix(subject, "results.") && strings.Count(subject, ".") == 1 {
		subject += "." + p.pc
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	if msgID != "" {
		msg.Header.Set(wire.HeaderMsgID, msgID)
	}
	_, err := p.js.PublishMsg(ctx, msg)
	return err
}

func (p *jsPublisher) Upload(ctx context.Context, bucket, key string, r io.Reader) error {
	if !p.nc.IsConnected() {
		return outbox.ErrUnavailable
	}
	p.mu.Lock()
	obs, ok := p.objects[bucket]
	p.mu.Unlock()
	if !ok {
		var err error
		obs, err = p.js.ObjectStore(ctx, bucket)
		if err != nil {
			return fmt.Errorf("object store %s: %w", bucket, err)
		}
		p.mu.Lock()
		p.objects[bucket] = obs
		p.mu.Unlock()
	}
	_, err := obs.Put(ctx, jetstream.ObjectMeta{Name: key}, r)
	return err
}

// resultEntry turns a result into an outbox entry; output above the inline
// limit becomes an attachment for result_output, keyed by result_id so a
// retried upload overwrites rather than duplicates.
func resultEntry(res wire.ExecResult) (outbox.Entry, error) {
	var atts []outbox.Attachment
	if len(res.Stdout) > wire.OutputInlineLimit {
		res.StdoutObject = res.ResultID + ".stdout"
		atts = append(atts, outbox.Attachment{Bucket: wire.ObjectResultOutput, Key: res.StdoutObject, Content: []byte(res.Stdout)})
		res.Stdout = ""
	}
	if len(res.Stderr) > wire.OutputInlineLimit {
		res.StderrObject = res.ResultID + ".stderr"
		atts = append(atts, outbox.Attachment{Bucket: wire.ObjectResultOutput, Key: res.StderrObject, Content: []byte(res.Stderr)})
		res.Stderr = ""
	}
	b, err := json.Marshal(res)
	if err != nil {
		return outbox.Entry{}, err
	}
	return outbox.Entry{Kind: "result", Ref: res.RequestID, Subject: wire.SubjectResults(res.RequestID, res.PCID), MsgID: res.ResultID, Data: b, Attachments: atts}, nil
}

// finish queues the outcome of an admitted request. The ledger marks it
// done once the broker has acknowledged it (onSent). It retries a failing
// disk for as long as the agent runs: an outcome is never dropped.
func (a *Agent) finish(res wire.ExecResult) {
	// The subject carries the pc_id and readers refuse a payload that
	// disagrees with it: a result is always this agent's.
	res.PCID = a.cfg.ID
	e, err := resultEntry(res)
	if err != nil {
		a.log.Error("encoding result", "request_id", res.RequestID, "err", err)
		return
	}
	if a.enqueueRetrying(e, "request_id", res.RequestID) {
		a.log.Debug("result queued", "request_id", res.RequestID, "result_id", res.ResultID, "exit_code", res.ExitCode)
	}
}

// onSent records delivered results (ledger) and inventory sections.
func (a *Agent) onSent(e outbox.Entry) error {
	if e.Kind == "inventory" {
		return a.onInventorySent(e)
	}
	if e.Kind != "result" || e.Ref == "" {
		return nil
	}
	err := a.ledger.Mark(e.Ref, ledgerDone)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // pruned, or a result of a request never admitted
	}
	return err
}

// enqueueRetrying reports whether the entry is on disk (false only when
// the agent stopped first).
func (a *Agent) enqueueRetrying(e outbox.Entry, logKV ...any) bool {
	delay := 100 * time.Millisecond
	for {
		err := a.outbox.Enqueue(e)
		if err == nil {
			return true
		}
		a.log.Error("cannot queue outbound message (disk full?); retrying", append(logKV, "subject", e.Subject, "err", err)...)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-a.stopped:
			t.Stop()
			a.log.Error("agent stopping with an outbound message not queued", append(logKV, "subject", e.Subject)...)
			return false
		}
		delay = min(delay*2, 30*time.Second)
	}
}

// queueStarted queues events.started.<exec_id>.<pc>.
func (a *Agent) queueStarted(c wire.Command, resultID string) {
	ev := wire.EventStarted{ResultID: resultID, RequestID: c.RequestID, ExecID: c.ExecID, JobID: c.ID, PCID: a.cfg.ID, StartedAt: time.Now().UTC()}
	b, err := json.Marshal(ev)
	if err != nil {
		return
	}
	a.enqueueRetrying(outbox.Entry{Kind: "started", BestEffort: true, Subject: wire.SubjectEventsStarted(c.ExecID, a.cfg.ID), MsgID: "started-" + resultID, Data: b})
}

// queueObs queues a timeline event; recordID with pc_id and source is its
// idempotency key.
func (a *Agent) queueObs(kind, recordID string, payload any) {
	ev := wire.ObsEvent{PCID: a.cfg.ID, At: time.Now().UTC(), Kind: kind, Source: "agent", EventRecordID: recordID}
	if payload != nil {
		if b, err := json.Marshal(payload); err == nil {
			ev.Payload = b
		}
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return
	}
	a.enqueueRetrying(outbox.Entry{Kind: "obs", Subject: wire.SubjectObs(a.cfg.ID), MsgID: "obs-" + a.cfg.ID + "-" + recordID, Data: b})
}

// readFileIfExists returns nil, nil for a missing file.
func readFileIfExists(p string) ([]byte, error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}
