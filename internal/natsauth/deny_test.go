package natsauth_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/wire"
)

// TestAgentRoleIsDeniedEverythingElse: with pc-a's credential, each
// operation an agent must never do is refused by the server, and the test
// sees the server's permission violation for exactly that subject — not a
// timeout of the operation.
func TestAgentRoleIsDeniedEverythingElse(t *testing.T) {
	srv := brokertest.StartWithRoles(t)
	seed := srv.EnrollAgent(t, "pc-a")
	srv.EnrollAgent(t, "pc-b")

	publish := func(subject string) func(*testing.T, *nats.Conn) {
		return func(t *testing.T, nc *nats.Conn) {
			if err := nc.Publish(subject, []byte(`{"pc_id":"pc-b","script":"id"}`)); err != nil {
				t.Fatal(err)
			}
			_ = nc.Flush()
		}
	}
	subscribe := func(subject string) func(*testing.T, *nats.Conn) {
		return func(t *testing.T, nc *nats.Conn) {
			if _, err := nc.SubscribeSync(subject); err != nil {
				t.Fatal(err)
			}
			_ = nc.Flush()
		}
	}
	// The real client calls an agent could attempt: they send the same
	// protocol the real code does, and fail with the violation.
	kvPut := func(bucket, key string) func(*testing.T, *nats.Conn) {
		return func(t *testing.T, nc *nats.Conn) {
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			// Not cancelled on return: the call runs on while the test
			// waits for the server's answer.
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			t.Cleanup(cancel)
			kv, err := js.KeyValue(ctx, bucket)
			if err != nil {
				t.Fatalf("opening %s (stream info is allowed): %v", bucket, err)
			}
			go func() { _, _ = kv.Put(ctx, key, []byte(`{"groups":["admins"]}`)) }()
		}
	}
	lastMsg := func(stream, subject string) func(*testing.T, *nats.Conn) {
		return func(t *testing.T, nc *nats.Conn) {
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			// Not cancelled on return: the call runs on while the test
			// waits for the server's answer.
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			t.Cleanup(cancel)
			s, err := js.Stream(ctx, stream)
			if err != nil {
				t.Fatalf("stream info %s (allowed): %v", stream, err)
			}
			go func() { _, _ = s.GetLastMsgForSubject(ctx, subject) }()
		}
	}

	const forgery = "Publish"
	tests := []struct {
		name    string
		do      func(*testing.T, *nats.Conn)
		op      string // "Publish" or "Subscription"
		subject string
	}{
		{"publish a command to every PC", publish(wire.SubjectCommandsAll), forgery, wire.SubjectCommandsAll},
		{"publish a command to another PC", publish(wire.SubjectCommandsPC("pc-b")), forgery, wire.SubjectCommandsPC("pc-b")},
		{"publish a command to itself", publish(wire.SubjectCommandsPC("pc-a")), forgery, wire.SubjectCommandsPC("pc-a")},
		{"publish a command to a group", publish(wire.SubjectCommandsGroup("lab")), forgery, wire.SubjectCommandsGroup("lab")},
		{"kill another run", publish(wire.SubjectKill("e1")), forgery, wire.SubjectKill("e1")},
		{"write its own config layer", kvPut(wire.BucketAgentConfig, wire.ConfigKeyPC("pc-a")), forgery, "$KV.agent_config.pcs.pc-a"},
		{"write the global config", kvPut(wire.BucketAgentConfig, wire.ConfigKeyGlobal), forgery, "$KV.agent_config.global"},
		{"write its own groups", kvPut(wire.BucketAgentGroups, "pc-a"), forgery, "$KV.agent_groups.pc-a"},
		{"publish another PC's heartbeat", publish(wire.SubjectHeartbeat("pc-b")), forgery, wire.SubjectHeartbeat("pc-b")},
		{"publish another PC's result", publish(wire.SubjectResults("req-1", "pc-b")), forgery, wire.SubjectResults("req-1", "pc-b")},
		{"publish a result without a PC", publish(wire.SubjectResultsLegacy("req-1")), forgery, wire.SubjectResultsLegacy("req-1")},
		{"publish another PC's obs event", publish(wire.SubjectObs("pc-b")), forgery, wire.SubjectObs("pc-b")},
		{"publish another PC's inventory", publish(wire.SubjectInventory("pc-b", "hw")), forgery, wire.SubjectInventory("pc-b", "hw")},
		{"publish another PC's started event", publish(wire.SubjectEventsStarted("e1", "pc-b")), forgery, wire.SubjectEventsStarted("e1", "pc-b")},
		{"publish another PC's host perf", publish(wire.SubjectHostPerf("pc-b")), forgery, wire.SubjectHostPerf("pc-b")},
		{"write the audit log", publish(wire.SubjectAudit("admin", "run", "x")), forgery, wire.SubjectAudit("admin", "run", "x")},
		{"subscribe to another PC's commands", subscribe(wire.SubjectCommandsPC("pc-b")), "Subscription", wire.SubjectCommandsPC("pc-b")},
		{"subscribe to every command", subscribe(wire.SubjectCommandsWild), "Subscription", wire.SubjectCommandsWild},
		{"subscribe to another agent's inbox", subscribe(wire.InboxPrefix("pc-b") + ".>"), "Subscription", "_INBOX.pc-b.>"},
		{"subscribe to every inbox", subscribe("_INBOX.>"), "Subscription", "_INBOX.>"},
		{"subscribe to another PC's requests", subscribe(wire.SubjectPing("pc-b")), "Subscription", wire.SubjectPing("pc-b")},
		{"subscribe to every heartbeat", subscribe(wire.SubjectHeartbeatWild), "Subscription", wire.SubjectHeartbeatWild},
		{"watch another PC's config layer", subscribe("$KV.agent_config.pcs.pc-b"), "Subscription", "$KV.agent_config.pcs.pc-b"},
		{"read another PC's config layer", lastMsg("KV_agent_config", "$KV.agent_config.pcs.pc-b"), forgery, "$JS.API.DIRECT.GET.KV_agent_config.$KV.agent_config.pcs.pc-b"},
		{"read another PC's groups", lastMsg("KV_agent_groups", "$KV.agent_groups.pc-b"), forgery, "$JS.API.DIRECT.GET.KV_agent_groups.$KV.agent_groups.pc-b"},
		{"read another PC's newest command", lastMsg(wire.StreamExec, wire.SubjectCommandsPC("pc-b")), forgery, "$JS.API.DIRECT.GET.EXEC.commands.pc.pc-b"},
		{"look into the results stream", publish("$JS.API.STREAM.INFO.RESULTS"), forgery, "$JS.API.STREAM.INFO.RESULTS"},
		{"read any command through the leader", publish("$JS.API.STREAM.MSG.GET.EXEC"), forgery, "$JS.API.STREAM.MSG.GET.EXEC"},
		{"purge a stream", publish("$JS.API.STREAM.PURGE.EXEC"), forgery, "$JS.API.STREAM.PURGE.EXEC"},
		{"delete a stream", publish("$JS.API.STREAM.DELETE.RESULTS"), forgery, "$JS.API.STREAM.DELETE.RESULTS"},
		{"read the results stream through a consumer", publish("$JS.API.CONSUMER.CREATE.RESULTS.x.results.>"), forgery, "$JS.API.CONSUMER.CREATE.RESULTS.x.results.>"},
		{"upload a release", publish("$O.agent_releases.C.x"), forgery, "$O.agent_releases.C.x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := make(errorSink, 16)
			nc := srv.ConnectAs(t, seed, nats.CustomInboxPrefix(wire.InboxPrefix("pc-a")), errs.handler())
			tt.do(t, nc)
			errs.expectViolation(t, tt.op, tt.subject)
		})
	}
}
