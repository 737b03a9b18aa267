package agent

import (
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// connErrLog logs why a connection attempt to the broker failed. Without it
// a refused TLS handshake (wrong CA, wrong pin, a certificate that does not
// name the host dialled) leaves an agent that never connects and says
// nothing. nats.go reports the failure of the first connection attempt and
// every failed dial afterwards; the same message is logged at most once a
// minute so that a broker that is down for hours does not fill the log.
type connErrLog struct {
	log *slog.Logger
	now func() time.Time

	mu       sync.Mutex
	last     string
	lastTime time.Time
}

func newConnErrLog(log *slog.Logger) *connErrLog { return &connErrLog{log: log, now: time.Now} }

// report is a nats.ConnErrHandler.
func (l *connErrLog) report(_ *nats.Conn, err error) {
	if err == nil {
		return
	}
	l.mu.Lock()
	now := l.now()
	repeat := err.Error() == l.last && now.Sub(l.lastTime) < time.Minute
	if !repeat {
		l.last, l.lastTime = err.Error(), now
	}
	l.mu.Unlock()
	if !repeat {
		l.log.Warn("cannot connect to the broker; retrying", "err", err)
	}
}
