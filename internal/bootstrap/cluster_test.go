package bootstrap_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/bootstrap"
	"github.com/kanade-project/kanade/internal/broker/brokertest"
)

// TestSetupOnAClusterSetsAndReconcilesReplicas: on a three-node cluster a
// first Setup at R1 and a second at R3 scale every resource up in place
// (reported as updated, field "replicas"), a third at R3 changes nothing,
// and every resource ends with a leader and two replicas once the new
// copies have caught up. A Setup without a count then keeps R3 and
// creates a missing resource at R3.
func TestSetupOnAClusterSetsAndReconcilesReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster")
	}
	c := brokertest.StartCluster(t, 3)
	js, err := jetstream.New(c.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	for _, step := range []struct {
		replicas int
		want     bootstrap.Action
		fields   []string
	}{
		{replicas: 1, want: bootstrap.Created},
		{replicas: 3, want: bootstrap.Updated, fields: []string{"replicas"}},
		{replicas: 3, want: bootstrap.Unchanged},
	} {
		changes, err := bootstrap.Setup(ctx, js, bootstrap.Options{Replicas: step.replicas})
		if err != nil {
			t.Fatalf("Setup R%d: %v", step.replicas, err)
		}
		if len(changes) != len(bootstrap.Spec()) {
			t.Fatalf("Setup R%d: %d changes, want %d", step.replicas, len(changes), len(bootstrap.Spec()))
		}
		for _, ch := range changes {
			if ch.Action != step.want || !slices.Equal(ch.Fields, step.fields) {
				t.Errorf("Setup R%d: %s %s = %s %v, want %s %v", step.replicas, ch.Resource.Kind, ch.Resource.Name, ch.Action, ch.Fields, step.want, step.fields)
			}
		}
	}
	// Scaling up is asynchronous: the new copies catch up, then count.
	for _, r := range bootstrap.Spec() {
		deadline := time.Now().Add(30 * time.Second)
		for {
			s, err := js.Stream(ctx, r.StreamName())
			if err != nil {
				t.Fatal(err)
			}
			info := s.CachedInfo()
			if info.Config.Replicas == 3 && info.Cluster != nil && info.Cluster.Leader != "" && len(info.Cluster.Replicas) == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: replicas %d, cluster %+v; want a leader and two replicas", r.StreamName(), info.Config.Replicas, info.Cluster)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Replicas 0 (`kanade jetstream setup` without --replicas) must not
	// scale the cluster down: every resource stays R3, and one that went
	// missing comes back at R3, the count of the others.
	gone := bootstrap.Spec()[2]
	if err := js.DeleteStream(ctx, gone.StreamName()); err != nil {
		t.Fatal(err)
	}
	changes, err := bootstrap.Setup(ctx, js, bootstrap.Options{})
	if err != nil {
		t.Fatalf("Setup keeping replicas: %v", err)
	}
	for _, ch := range changes {
		want := bootstrap.Unchanged
		if ch.Resource.Name == gone.Name {
			want = bootstrap.Created
		}
		if ch.Action != want || ch.Replicas != 3 {
			t.Errorf("Setup keeping replicas: %s %s = %s %v R%d, want %s R3", ch.Resource.Kind, ch.Resource.Name, ch.Action, ch.Fields, ch.Replicas, want)
		}
	}
	for _, r := range bootstrap.Spec() {
		s, err := js.Stream(ctx, r.StreamName())
		if err != nil {
			t.Fatal(err)
		}
		if n := s.CachedInfo().Config.Replicas; n != 3 {
			t.Errorf("%s: replicas %d after Setup without a count, want 3", r.StreamName(), n)
		}
	}
}
