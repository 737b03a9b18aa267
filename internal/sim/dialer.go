package sim

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// countingDialer is every simulated agent's nats.CustomDialer: it counts
// dials (first connections and reconnections) and sockets open now, which
// the agent itself does not expose and a benchmark needs (a reconnect
// storm is over when every socket is back).
type countingDialer struct {
	d     net.Dialer
	dials atomic.Int64
	fails atomic.Int64
	open  atomic.Int64
}

func newCountingDialer() *countingDialer {
	// The timeout matches nats.go's default connect timeout; keep-alive is
	// left to NATS pings.
	return &countingDialer{d: net.Dialer{Timeout: 2 * time.Second, KeepAlive: -1}}
}

// Dial implements nats.CustomDialer.
func (c *countingDialer) Dial(network, address string) (net.Conn, error) {
	c.dials.Add(1)
	conn, err := c.d.Dial(network, address)
	if err != nil {
		c.fails.Add(1)
		return nil, err
	}
	c.open.Add(1)
	return &countedConn{Conn: conn, open: &c.open}, nil
}

// countedConn decrements the open count once, however often it is closed.
type countedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}
