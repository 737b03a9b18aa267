package brokertest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/kanade-project/kanade/internal/broker"
)

// Cluster is n embedded nats-server nodes forming one JetStream cluster on
// loopback: one cluster name, routes between every pair, each node with its
// own client port, cluster port and store. Nodes can be stopped and
// restarted one at a time, on the same ports and store, to test failover.
// Nothing is bootstrapped: whoever uses the cluster creates the resources
// with the replicas it wants.
type Cluster struct {
	t     testing.TB
	Nodes []*Node
}

// Node is one member of a Cluster.
type Node struct {
	t       testing.TB
	name    string
	dataDir string
	listen  string
	cluster string // cluster (route) listen address
	// clusterName and routes are the same for every node; routes name
	// every node, this one included, as nats-server's own cluster tests do:
	// the route count is how a fresh server sizes the JetStream meta group
	// before it has met its peers, so it must be the whole cluster.
	clusterName string
	routes      []*url.URL
	B           *broker.Broker
}

// StartCluster starts n nodes (n ≥ 1; 3 for R3), waits until JetStream has
// a meta leader that sees every node and every node is current, and stops
// them all when the test ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("brokertest: StartCluster(%d): need at least one node", n)
	}
	c := &Cluster{t: t}
	clusterName := fmt.Sprintf("kanade-test-%d", time.Now().UnixNano())
	addrs := freeAddrs(t, 2*n)
	var routes []string
	for i := range n {
		node := &Node{t: t, name: fmt.Sprintf("n%d", i+1), dataDir: t.TempDir(), listen: addrs[2*i], cluster: addrs[2*i+1], clusterName: clusterName}
		routes = append(routes, "nats-route://"+node.cluster)
		c.Nodes = append(c.Nodes, node)
	}
	for _, node := range c.Nodes {
		node.routes = server.RoutesFromStr(strings.Join(routes, ","))
	}
	t.Cleanup(func() {
		for _, node := range c.Nodes {
			node.Stop()
		}
	})
	for _, node := range c.Nodes {
		node.Restart()
	}
	c.WaitReady(t)
	return c
}

// URLs lists every node's client URL (running or not), stable across
// restarts: what agents and the server are configured with.
func (c *Cluster) URLs() []string {
	out := make([]string, 0, len(c.Nodes))
	for _, node := range c.Nodes {
		out = append(out, node.URL())
	}
	return out
}

// Node returns the node with the given server name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, node := range c.Nodes {
		if node.name == name {
			return node
		}
	}
	return nil
}

// Running lists the nodes that are up.
func (c *Cluster) Running() []*Node {
	var out []*Node
	for _, node := range c.Nodes {
		if node.B != nil {
			out = append(out, node)
		}
	}
	return out
}

// WaitReady polls (30 s at most) until the running nodes have exactly one
// JetStream meta leader, that leader sees every running node as an online
// JetStream peer (so placement of replicated streams can use them all), and
// every running node is current with the meta group.
func (c *Cluster) WaitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		state := c.readiness()
		if state == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("brokertest: cluster not ready after 30s: %s", state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readiness returns "" when the cluster is ready, else what is missing.
func (c *Cluster) readiness() string {
	running := c.Running()
	var leaders []*Node
	for _, node := range running {
		srv := node.B.Server()
		if !srv.JetStreamIsCurrent() {
			return node.name + " is not current with the meta group"
		}
		if srv.JetStreamIsLeader() {
			leaders = append(leaders, node)
		}
	}
	if len(leaders) != 1 {
		return fmt.Sprintf("%d meta leaders", len(leaders))
	}
	if peers := leaders[0].B.Server().JetStreamClusterPeers(); len(peers) != len(running) {
		return fmt.Sprintf("meta leader %s sees %d online peers %v, want %d", leaders[0].name, len(peers), peers, len(running))
	}
	return ""
}

// MetaLeader returns the running node that is the JetStream meta leader,
// or nil during an election.
func (c *Cluster) MetaLeader() *Node {
	for _, node := range c.Running() {
		if node.B.Server().JetStreamIsLeader() {
			return node
		}
	}
	return nil
}

// Connect opens a client connection to every node's URL (reconnecting
// forever), closed at the end of the test.
func (c *Cluster) Connect(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(strings.Join(c.URLs(), ","), opts...)
	if err != nil {
		t.Fatalf("brokertest: connect to the cluster: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Name is the node's server name (n1, n2, ...), as JetStream reports it
// for stream and consumer leaders.
func (n *Node) Name() string { return n.name }

// URL is the node's client URL; stable across Restart.
func (n *Node) URL() string { return "nats://" + n.listen }

// StreamMsgs is the number of messages in this node's own copy of stream
// (global account); ok is false when the node is down or holds no copy.
// A restarted node has caught up when its count matches the leader's.
func (n *Node) StreamMsgs(stream string) (msgs uint64, ok bool) {
	if n.B == nil {
		return 0, false
	}
	jsz, err := n.B.Server().Jsz(&server.JSzOptions{Account: server.DEFAULT_GLOBAL_ACCOUNT, Streams: true})
	if err != nil {
		return 0, false
	}
	for _, acc := range jsz.AccountDetails {
		for _, s := range acc.Streams {
			if s.Name == stream {
				return s.State.Msgs, true
			}
		}
	}
	return 0, false
}

// Stop shuts the node down (idempotent).
func (n *Node) Stop() {
	if n.B != nil {
		n.B.Shutdown()
		n.B = nil
	}
}

// Restart starts the node again on the same ports and store. It returns
// when the node accepts clients; call Cluster.WaitReady to wait until it
// has rejoined JetStream.
func (n *Node) Restart() {
	n.t.Helper()
	if n.B != nil {
		n.t.Fatal("brokertest: Restart while running")
	}
	configure := func(o *server.Options) {
		o.Cluster.Name = n.clusterName
		o.Cluster.Host, o.Cluster.Port = splitHostPort(n.t, n.cluster)
		o.Routes = n.routes
	}
	var err error
	// The ports were just released (by freeAddr or Stop); another process
	// may briefly hold one, so retry for a while rather than fail the test.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n.B, err = broker.Start(context.Background(), broker.Options{
			Listen: n.listen, DataDir: n.dataDir, Name: n.name, MaxStore: 64 << 30, Configure: configure,
		})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		n.t.Fatalf("brokertest: node %s: %v", n.name, err)
	}
}

func splitHostPort(t testing.TB, addr string) (string, int) {
	t.Helper()
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		t.Fatalf("brokertest: port of %s: %v", addr, err)
	}
	return host, port
}

// freeAddrs returns k distinct free loopback addresses: every listener is
// held until all are chosen, so no two can be the same port.
func freeAddrs(t testing.TB, k int) []string {
	t.Helper()
	var out []string
	for range k {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		out = append(out, l.Addr().String())
	}
	return out
}
