package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/wire"
)

// publishTimeout bounds one wait for a PubAck.
const publishTimeout = 10 * time.Second

// publishResult sends res to RESULTS and waits for the acknowledgement,
// retrying with backoff while the broker is unreachable. It gives up only
// when the agent is stopping and the broker still does not answer.
func (a *Agent) publishResult(res wire.ExecResult) {
	log := a.log.With("request_id", res.RequestID, "result_id", res.ResultID)
	backoff := time.Second
	for attempt := 1; ; attempt++ {
		err := a.tryPublishResult(res)
		if err == nil {
			log.Debug("result acknowledged", "attempt", attempt)
			return
		}
		if a.runCtx.Err() != nil && attempt >= 3 {
			log.Error("result not delivered before shutdown", "err", err)
			return
		}
		log.Warn("result publish failed; retrying", "attempt", attempt, "err", err, "backoff", backoff)
		t := time.NewTimer(jitter(backoff))
		select {
		case <-t.C:
		case <-a.runCtx.Done():
			t.Stop()
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

func (a *Agent) tryPublishResult(res wire.ExecResult) error {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	// Large output goes to the object store first: the result message
	// must stay under the broker's max_payload. The object key is derived
	// from result_id, so a retry overwrites rather than duplicates.
	if len(res.Stdout) > wire.OutputInlineLimit {
		key := res.ResultID + ".stdout"
		if err := a.putOutput(ctx, key, res.Stdout); err != nil {
			return err
		}
		res.Stdout, res.StdoutObject = "", key
	}
	if len(res.Stderr) > wire.OutputInlineLimit {
		key := res.ResultID + ".stderr"
		if err := a.putOutput(ctx, key, res.Stderr); err != nil {
			return err
		}
		res.Stderr, res.StderrObject = "", key
	}
	b, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encoding result: %w", err)
	}
	msg := &nats.Msg{Subject: wire.SubjectResults(res.RequestID), Data: b, Header: nats.Header{}}
	msg.Header.Set(wire.HeaderMsgID, res.ResultID)
	if _, err := a.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publishing result: %w", err)
	}
	return nil
}

func (a *Agent) putOutput(ctx context.Context, key, data string) error {
	obs, err := a.js.ObjectStore(ctx, wire.ObjectResultOutput)
	if err != nil {
		return fmt.Errorf("opening object store %s: %w", wire.ObjectResultOutput, err)
	}
	if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: key}, bytes.NewReader([]byte(data))); err != nil {
		return fmt.Errorf("uploading %s: %w", key, err)
	}
	return nil
}

// jitter spreads d by ±25 % so a fleet that lost the broker together does
// not retry together.
func jitter(d time.Duration) time.Duration {
	f := 0.75 + rand.Float64()*0.5
	return time.Duration(float64(d) * f)
}
