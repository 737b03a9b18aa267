package agent

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestConnErrLogSaysEachReasonOnceAMinute(t *testing.T) {
	var buf bytes.Buffer
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newConnErrLog(slog.New(slog.NewTextHandler(&buf, nil)))
	l.now = func() time.Time { return clock }
	tls := errors.New("x509: certificate signed by unknown authority")
	refused := errors.New("dial tcp: connection refused")
	for i, step := range []struct {
		after  time.Duration
		err    error
		logged bool
	}{
		{0, tls, true},
		{time.Second, tls, false},
		{30 * time.Second, tls, false},
		{time.Second, refused, true},
		{time.Second, tls, true}, // the reason changed back
		{time.Minute, tls, true}, // a minute later: said again
		{time.Second, nil, false},
	} {
		clock = clock.Add(step.after)
		before := strings.Count(buf.String(), "\n")
		l.report(nil, step.err)
		if got := strings.Count(buf.String(), "\n") > before; got != step.logged {
			t.Fatalf("step %d (%v): logged %v, want %v\n%s", i, step.err, got, step.logged, buf.String())
		}
	}
	if !strings.Contains(buf.String(), "cannot connect to the broker") || !strings.Contains(buf.String(), "unknown authority") {
		t.Errorf("log:\n%s", buf.String())
	}
}
