package brokertest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
)

// TestClusterKeepsAnR3StreamThroughANodeRestart: a three-node cluster
// places an R3 stream on every node; with its leader stopped the stream
// still takes writes (a new leader from the two others), and the stopped
// node, restarted on the same ports and store, catches up.
func TestClusterKeepsAnR3StreamThroughANodeRestart(t *testing.T) {
	c := brokertest.StartCluster(t, 3)
	if got := len(c.URLs()); got != 3 {
		t.Fatalf("URLs = %d, want 3", got)
	}
	js, err := jetstream.New(c.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3TEST", Subjects: []string{"r3test.>"}, Replicas: 3, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("cluster info = %+v, want a leader and 2 replicas", info.Cluster)
	}
	publish := func(n int) {
		t.Helper()
		for range n {
			// A publish during the election after a stop may time out;
			// the message id makes the retry harmless.
			id := time.Now().Format(time.RFC3339Nano)
			for {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := js.Publish(pctx, "r3test.x", []byte("x"), jetstream.WithMsgID(id))
				cancel()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("publish: %v", err)
				}
			}
		}
	}
	publish(5)

	leader := c.Node(info.Cluster.Leader)
	if leader == nil {
		t.Fatalf("leader %q is not a node", info.Cluster.Leader)
	}
	leader.Stop()
	publish(5)
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err = s.Info(ctx)
		if err == nil && info.Cluster.Leader != "" && info.Cluster.Leader != leader.Name() && info.State.Msgs == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new leader with 10 messages: info=%+v err=%v", info, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	leader.Restart()
	c.WaitReady(t)
	deadline = time.Now().Add(30 * time.Second)
	for {
		if n, ok := leader.StreamMsgs("R3TEST"); ok && n == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the restarted node did not catch up with R3TEST")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
