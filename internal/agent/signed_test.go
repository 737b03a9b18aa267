//go:build !windows

package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/agentconfig"
	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/cmdsign"
	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/signing"
	"github.com/kanade-project/kanade/internal/wire"
)

// commandKey is a generated command key pair on disk.
type commandKey struct {
	signer *cmdsign.Signer
	pub    string // path of command.pub
}

func newCommandKey(t *testing.T) commandKey {
	t.Helper()
	dir := t.TempDir()
	if _, err := signing.Generate(dir, signing.PurposeCommand); err != nil {
		t.Fatal(err)
	}
	s, err := cmdsign.LoadSigner(filepath.Join(dir, "command.key"))
	if err != nil {
		t.Fatal(err)
	}
	return commandKey{signer: s, pub: filepath.Join(dir, "command.pub")}
}

// writeRing replaces path atomically (as an operator's deployment tool
// would) with the public lines of keys, or with text when keys is empty.
func writeRing(t *testing.T, path, text string, keys ...commandKey) {
	t.Helper()
	for _, k := range keys {
		b, err := os.ReadFile(k.pub)
		if err != nil {
			t.Fatal(err)
		}
		text += string(b)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// signingFromConfig goes through agent.toml parsing, as the real agent
// does, to the agent's settings.
func signingFromConfig(t *testing.T, ringPath string, require bool) *agent.CommandSigning {
	t.Helper()
	cfg, err := agentconfig.Parse([]byte(fmt.Sprintf("[agent]\nnats_urls = [\"nats://x:4222\"]\n[security]\ncommand_keys_file = %q\nrequire_signed_commands = %v\n", ringPath, require)))
	if err != nil {
		t.Fatal(err)
	}
	req, keys, err := cfg.CommandSigning()
	if err != nil {
		t.Fatal(err)
	}
	cs := &agent.CommandSigning{Require: req}
	if keys != nil {
		cs.Keys = keys
	}
	return cs
}

// enforcing returns settings that require commands signed by keys.
func enforcing(t *testing.T, keys ...commandKey) *agent.CommandSigning {
	t.Helper()
	ring := filepath.Join(t.TempDir(), "command-keys.pub")
	writeRing(t, ring, "# trusted command keys\n", keys...)
	return signingFromConfig(t, ring, true)
}

// startSigningAgent runs an agent with cs and returns its debug log.
func startSigningAgent(t *testing.T, srv *brokertest.Server, id string, cs *agent.CommandSigning) *logBuffer {
	t.Helper()
	logs := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent %s log:\n%s", id, logs.String())
		}
	})
	startAgentWith(t, agent.Config{ID: id, NATSURLs: []string{srv.URL()}, CommandSigning: cs,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	return logs
}

// raw is a command exactly as it goes on the wire.
type raw struct {
	subject string
	header  nats.Header
	body    []byte
	rid     string
}

// commandBytes marshals a fresh command running script.
func commandBytes(t *testing.T, script string) ([]byte, string) {
	t.Helper()
	cmd := fleetclient.Prepare(wire.Command{Script: script})
	b, err := json.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return b, cmd.RequestID
}

// signedFor signs a command for target and publishes it on subject.
func signedFor(t *testing.T, s *cmdsign.Signer, target, subject, script string, expires time.Time) raw {
	t.Helper()
	b, rid := commandBytes(t, script)
	h, err := s.Sign(target, b, expires)
	if err != nil {
		t.Fatal(err)
	}
	return raw{subject: subject, header: h, body: b, rid: rid}
}

// publishRaw stores r in EXEC and returns a subscription to its results,
// made before the publish.
func publishRaw(t *testing.T, nc *nats.Conn, js jetstream.JetStream, r raw) *nats.Subscription {
	t.Helper()
	sub, err := nc.SubscribeSync(wire.SubjectResultsOfRequest(r.rid))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: r.subject, Header: r.header, Data: r.body}); err != nil {
		t.Fatal(err)
	}
	return sub
}

// loggedFrom reports whether a line with message msg mentions requestID
// and came from source (live or replay).
func (l *logBuffer) loggedFrom(msg, requestID, source string) bool {
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, `msg="`+msg+`"`) && strings.Contains(line, "request_id="+requestID) && strings.Contains(line, "source="+source) {
			return true
		}
	}
	return false
}

func nextResult(t *testing.T, sub *nats.Subscription) wire.ExecResult {
	t.Helper()
	m, err := sub.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatalf("no result on %s: %v", sub.Subject, err)
	}
	var r wire.ExecResult
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// signedCase is one acceptance case: a command built for the agent me,
// and the answer it must get.
type signedCase struct {
	name   string
	build  func(t *testing.T, me, marker string) raw
	code   int
	stdout string
	stderr []string
}

// signedCases are the acceptance cases of signed commands for an agent
// that trusts only good.
func signedCases(good, unknown commandKey) []signedCase {
	week := func() time.Time { return time.Now().Add(cmdsign.MaxLifetime - time.Minute) }
	pcSubject := wire.SubjectCommandsPC
	return []signedCase{
		{
			name: "signed runs",
			build: func(t *testing.T, me, _ string) raw {
				return signedFor(t, good.signer, cmdsign.TargetPC(me), pcSubject(me), "echo signed-ok", week())
			},
			code: 0, stdout: "signed-ok\n",
		},
		{
			name: "one body byte changed",
			build: func(t *testing.T, me, marker string) raw {
				r := signedFor(t, good.signer, cmdsign.TargetPC(me), pcSubject(me), "echo ran >> "+marker+" #a", week())
				i := strings.Index(string(r.body), "#a")
				r.body[i+1] = 'b'
				return r
			},
			code: wire.ExitRefusedSignature, stderr: []string{"signature does not verify", "changed after signing"},
		},
		{
			name: "signature stripped",
			build: func(t *testing.T, me, marker string) raw {
				r := signedFor(t, good.signer, cmdsign.TargetPC(me), pcSubject(me), "echo ran >> "+marker, week())
				r.header = nil
				return r
			},
			code: wire.ExitRefusedSignature, stderr: []string{"not signed", "requires signed commands", "--command-key", "KANADE_COMMAND_KEY", "command_key_file"},
		},
		{
			name: "re-targeted to another PC",
			build: func(t *testing.T, me, marker string) raw {
				return signedFor(t, good.signer, cmdsign.TargetPC("pc-elsewhere"), pcSubject(me), "echo ran >> "+marker, week())
			},
			code: wire.ExitRefusedSignature, stderr: []string{"signed for pc:pc-elsewhere but received on commands.pc."},
		},
		{
			name: "replayed after expiry",
			build: func(t *testing.T, me, marker string) raw {
				past := time.Now().Add(-8 * 24 * time.Hour)
				old := *good.signer
				old.Now = func() time.Time { return past }
				return signedFor(t, &old, cmdsign.TargetPC(me), pcSubject(me), "echo ran >> "+marker, past.Add(cmdsign.MaxLifetime))
			},
			code: wire.ExitRefusedSignature, stderr: []string{"expired at", "publish the command again"},
		},
		{
			name: "signed by an unknown key",
			build: func(t *testing.T, me, marker string) raw {
				return signedFor(t, unknown.signer, cmdsign.TargetPC(me), pcSubject(me), "echo ran >> "+marker, week())
			},
			code: wire.ExitRefusedSignature, stderr: []string{unknown.signer.KeyID(), "trusts " + good.signer.KeyID(), "command.pub"},
		},
	}
}

func checkSignedResult(t *testing.T, tc signedCase, me string, r wire.ExecResult) {
	t.Helper()
	if r.PCID != me || r.ExitCode != tc.code || (tc.stdout != "" && r.Stdout != tc.stdout) {
		t.Fatalf("result = %+v, want exit %d from %s with stdout %q", r, tc.code, me, tc.stdout)
	}
	if r.Skipped {
		t.Errorf("a signature refusal (or a run) is not a skip: %+v", r)
	}
	for _, want := range tc.stderr {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("stderr %q lacks %q", r.Stderr, want)
		}
	}
}

// TestSignedCommandsLive: on an enforcing agent, a signed command runs and
// every tampered, stripped, re-targeted, expired or foreign one is refused
// with exit 123 and a stderr that says what to fix; none of them runs.
func TestSignedCommandsLive(t *testing.T) {
	srv := brokertest.Start(t)
	good, unknown := newCommandKey(t), newCommandKey(t)
	const me = "sig-live"
	logs := startSigningAgent(t, srv, me, enforcing(t, good))
	c := client(t, srv)
	hb := waitPing(t, c, me)
	if !slices.Equal(hb.CommandKeyFingerprints, []string{good.signer.KeyID()}) || hb.CommandSigning != wire.CommandSigningEnforced {
		t.Fatalf("heartbeat fingerprints %v, signing %q; want [%s] enforced", hb.CommandKeyFingerprints, hb.CommandSigning, good.signer.KeyID())
	}
	marker := filepath.Join(t.TempDir(), "ran")
	nc, js := srv.Connect(t), srv.JetStream(t)
	for _, tc := range signedCases(good, unknown) {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.build(t, me, marker)
			checkSignedResult(t, tc, me, nextResult(t, publishRaw(t, nc, js, r)))
			if tc.code == wire.ExitRefusedSignature && !logs.loggedFrom("security: command refused", r.rid, "live") {
				t.Errorf("no security log line for %s", r.rid)
			}
		})
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a refused command ran")
	}
}

// TestSignedCommandsReplayedAfterOffline: the same cases, published while
// each agent is offline; the agent replays the newest command of its
// subject from EXEC when it starts and judges it exactly as a live one.
func TestSignedCommandsReplayedAfterOffline(t *testing.T) {
	srv := brokertest.Start(t)
	good, unknown := newCommandKey(t), newCommandKey(t)
	marker := filepath.Join(t.TempDir(), "ran")
	nc, js := srv.Connect(t), srv.JetStream(t)
	cases := signedCases(good, unknown)
	subs := make([]*nats.Subscription, len(cases))
	rids := make([]string, len(cases))
	for i, tc := range cases {
		r := tc.build(t, fmt.Sprintf("sig-replay-%d", i), marker)
		subs[i], rids[i] = publishRaw(t, nc, js, r), r.rid
	}
	logs := make([]*logBuffer, len(cases))
	for i := range cases {
		logs[i] = startSigningAgent(t, srv, fmt.Sprintf("sig-replay-%d", i), enforcing(t, good))
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			me := fmt.Sprintf("sig-replay-%d", i)
			checkSignedResult(t, tc, me, nextResult(t, subs[i]))
			msg := "command admitted"
			if tc.code == wire.ExitRefusedSignature {
				msg = "security: command refused"
			}
			if !logs[i].loggedFrom(msg, rids[i], "replay") {
				t.Errorf("%s was not judged on the replay path", rids[i])
			}
		})
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a refused command ran")
	}
}

// TestSignedGroupCommands: a command signed for a group reaches a member;
// the same signature re-published to another group of the same agent is
// refused.
func TestSignedGroupCommands(t *testing.T) {
	srv := brokertest.Start(t)
	good := newCommandKey(t)
	const me = "sig-grp"
	startSigningAgent(t, srv, me, enforcing(t, good))
	c := client(t, srv)
	waitPing(t, c, me)
	put(t, kv(t, srv.JetStream(t), wire.BucketAgentGroups), me, `{"groups":["canary","lab"]}`)
	waitFor(t, "the agent to join both groups", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		hb, err := c.Ping(ctx, me)
		return err == nil && slices.Equal(hb.Groups, []string{"canary", "lab"})
	})
	nc, js := srv.Connect(t), srv.JetStream(t)
	expires := time.Now().Add(time.Hour)

	r := signedFor(t, good.signer, cmdsign.TargetGroup("canary"), wire.SubjectCommandsGroup("canary"), "echo group-ok", expires)
	if res := nextResult(t, publishRaw(t, nc, js, r)); res.ExitCode != 0 || res.Stdout != "group-ok\n" {
		t.Fatalf("group command: %+v", res)
	}
	r = signedFor(t, good.signer, cmdsign.TargetGroup("canary"), wire.SubjectCommandsGroup("lab"), "echo never", expires)
	res := nextResult(t, publishRaw(t, nc, js, r))
	if res.ExitCode != wire.ExitRefusedSignature || !strings.Contains(res.Stderr, "signed for group:canary but received on commands.group.lab") {
		t.Fatalf("re-published group command: %+v", res)
	}
	// A broadcast signed for all reaches it too, through the fleet client.
	c.Signer = good.signer
	if out := runOn(t, c, fleetclient.Target{All: true}, wire.Command{Script: "echo all-ok"}, 1)[0]; out.ExitCode != 0 || out.Stdout != "all-ok\n" {
		t.Fatalf("signed broadcast: %+v", out)
	}
}

// TestUnsignedCommandsWhenNotEnforcing: the switch off, or on with an
// empty ring, runs unsigned commands; the heartbeat says which and lists
// the trusted keys ([] when none). A ring that cannot be read with the
// switch on refuses everything, naming the file.
func TestUnsignedCommandsWhenNotEnforcing(t *testing.T) {
	srv := brokertest.Start(t)
	key := newCommandKey(t)
	ringWith := func(t *testing.T, keys ...commandKey) string {
		p := filepath.Join(t.TempDir(), "command-keys.pub")
		writeRing(t, p, "", keys...)
		return p
	}
	missing := filepath.Join(t.TempDir(), "absent.pub")
	for i, tc := range []struct {
		name    string
		cs      func(t *testing.T) *agent.CommandSigning
		mode    string
		keys    []string
		code    int
		stderr  string
		signedV int // exit code of a validly signed command
	}{
		{"no settings", func(*testing.T) *agent.CommandSigning { return nil }, wire.CommandSigningOff, []string{}, 0, "", 0},
		{"switch off with a ring", func(t *testing.T) *agent.CommandSigning { return signingFromConfig(t, ringWith(t, key), false) },
			wire.CommandSigningOff, []string{key.signer.KeyID()}, 0, "", 0},
		{"switch on with an empty ring", func(t *testing.T) *agent.CommandSigning { return signingFromConfig(t, ringWith(t), true) },
			wire.CommandSigningNoKeys, []string{}, 0, "", 0},
		{"switch on with a missing ring fails closed", func(t *testing.T) *agent.CommandSigning { return signingFromConfig(t, missing, true) },
			wire.CommandSigningFailClosed, []string{}, wire.ExitRefusedSignature, missing + " does not exist", wire.ExitRefusedSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			me := fmt.Sprintf("sig-off-%d", i)
			startSigningAgent(t, srv, me, tc.cs(t))
			c := client(t, srv)
			waitPing(t, c, me)
			m, err := c.NC.Request(wire.SubjectPing(me), nil, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(m.Data, &fields); err != nil {
				t.Fatal(err)
			}
			want, _ := json.Marshal(tc.keys)
			if string(fields["command_key_fingerprints"]) != string(want) || string(fields["command_signing"]) != `"`+tc.mode+`"` {
				t.Errorf("heartbeat command_key_fingerprints %s, command_signing %s; want %s, %q", fields["command_key_fingerprints"], fields["command_signing"], want, tc.mode)
			}
			r := runOn(t, c, fleetclient.Target{PC: me}, wire.Command{Script: "echo unsigned"}, 1)[0]
			if r.ExitCode != tc.code || !strings.Contains(r.Stderr, tc.stderr) {
				t.Errorf("unsigned command: %+v, want exit %d with %q", r, tc.code, tc.stderr)
			}
			c.Signer = key.signer
			if r := runOn(t, c, fleetclient.Target{PC: me}, wire.Command{Script: "echo signed"}, 1)[0]; r.ExitCode != tc.signedV {
				t.Errorf("signed command: %+v, want exit %d", r, tc.signedV)
			}
		})
	}
}

// TestCommandKeyRingReload: keys are rotated without a restart; a ring
// that does not parse is reported and leaves the previous ring in force.
func TestCommandKeyRingReload(t *testing.T) {
	srv := brokertest.Start(t)
	k1, k2 := newCommandKey(t), newCommandKey(t)
	ring := filepath.Join(t.TempDir(), "command-keys.pub")
	writeRing(t, ring, "", k1)
	cs := signingFromConfig(t, ring, true)
	cs.ReloadInterval = 20 * time.Millisecond
	const me = "sig-reload"
	logs := startSigningAgent(t, srv, me, cs)
	c := client(t, srv)
	waitPing(t, c, me)
	run := func(k commandKey) wire.ExecResult {
		c.Signer = k.signer
		return runOn(t, c, fleetclient.Target{PC: me}, wire.Command{Script: "echo rotated"}, 1)[0]
	}
	if r := run(k1); r.ExitCode != 0 {
		t.Fatalf("k1 before any change: %+v", r)
	}

	writeRing(t, ring, "kanade-command-key ed25519 not-a-key\n")
	waitFor(t, "the failed reload to be reported", func() bool { return strings.Contains(logs.String(), "command keys not reloaded") })
	if r := run(k1); r.ExitCode != 0 {
		t.Fatalf("k1 after a malformed ring: %+v (the previous ring must stay in force)", r)
	}
	if hb := waitPing(t, c, me); !slices.Equal(hb.CommandKeyFingerprints, []string{k1.signer.KeyID()}) || hb.CommandSigning != wire.CommandSigningEnforced {
		t.Fatalf("after a malformed ring the heartbeat says %v %q", hb.CommandKeyFingerprints, hb.CommandSigning)
	}

	writeRing(t, ring, "# rotated\n", k2)
	waitFor(t, "the new ring", func() bool {
		hb := waitPing(t, c, me)
		return slices.Equal(hb.CommandKeyFingerprints, []string{k2.signer.KeyID()})
	})
	if r := run(k1); r.ExitCode != wire.ExitRefusedSignature || !strings.Contains(r.Stderr, k1.signer.KeyID()) {
		t.Fatalf("k1 after rotation: %+v, want 123 naming k1", r)
	}
	if r := run(k2); r.ExitCode != 0 {
		t.Fatalf("k2 after rotation: %+v", r)
	}
}

// TestVerificationEventsOnlyOnChange: many refusals for the same reason
// make one timeline event, and the next verified command one more.
func TestVerificationEventsOnlyOnChange(t *testing.T) {
	srv := brokertest.Start(t)
	key := newCommandKey(t)
	const me = "sig-obs"
	startSigningAgent(t, srv, me, enforcing(t, key))
	c := client(t, srv)
	waitPing(t, c, me)
	for range 5 {
		if r := runOn(t, c, fleetclient.Target{PC: me}, wire.Command{Script: "echo x"}, 1)[0]; r.ExitCode != wire.ExitRefusedSignature {
			t.Fatalf("unsigned: %+v", r)
		}
	}
	c.Signer = key.signer
	for range 3 {
		if r := runOn(t, c, fleetclient.Target{PC: me}, wire.Command{Script: "echo x"}, 1)[0]; r.ExitCode != 0 {
			t.Fatalf("signed: %+v", r)
		}
	}
	// Every event was queued before the last result; an empty outbox
	// means they are all in the stream.
	waitFor(t, "the outbox to drain", func() bool { return waitPing(t, c, me).OutboxDepth == 0 })
	js := srv.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, wire.StreamObs, jetstream.OrderedConsumerConfig{FilterSubjects: []string{wire.SubjectObs(me)}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.FetchNoWait(int(info.NumPending))
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for m := range batch.Messages() {
		var ev wire.ObsEvent
		if err := json.Unmarshal(m.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Kind != wire.ObsCommandVerification {
			continue
		}
		var p struct{ State, Previous string }
		_ = json.Unmarshal(ev.Payload, &p)
		states = append(states, p.Previous+"->"+p.State)
	}
	if !slices.Equal(states, []string{"ok->unsigned", "unsigned->ok"}) {
		t.Fatalf("verification events %v, want one for the refusals and one for the recovery", states)
	}
}
