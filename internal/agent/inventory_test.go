//go:build !windows

package agent_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/wire"
)

// fakeInventory is a collector whose software list the test changes.
type fakeInventory struct {
	mu       sync.Mutex
	programs []wire.Program
}

func (f *fakeInventory) Hardware(context.Context) wire.Hardware {
	return wire.Hardware{Manufacturer: "Kanade Labs", Model: "Test Box", CPU: wire.CPU{Model: "FakeCPU", Cores: 4, LogicalProcessors: 8}, RAMBytes: 16 << 30}
}
func (f *fakeInventory) OS(context.Context) wire.OSInfo {
	return wire.OSInfo{Name: "FakeOS", Version: "1.0"}
}
func (f *fakeInventory) Network(context.Context) wire.Network {
	return wire.Network{Interfaces: []wire.Interface{{Name: "eth0", MAC: "02:00:00:00:00:01", Up: true, IPv4: []string{"192.0.2.10/24"}}}}
}
func (f *fakeInventory) Software(context.Context) wire.Software {
	f.mu.Lock()
	defer f.mu.Unlock()
	return wire.Software{Programs: append([]wire.Program(nil), f.programs...)}
}

func (f *fakeInventory) setPrograms(p ...wire.Program) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.programs = p
}

// inventoryFeed collects inventory.<pc>.> messages.
type inventoryFeed struct{ ch chan wire.InventoryMessage }

func watchInventory(t *testing.T, nc *nats.Conn, pc string) inventoryFeed {
	t.Helper()
	f := inventoryFeed{ch: make(chan wire.InventoryMessage, 100)}
	sub, err := nc.Subscribe("inventory."+pc+".>", func(m *nats.Msg) {
		var im wire.InventoryMessage
		if json.Unmarshal(m.Data, &im) == nil {
			f.ch <- im
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	return f
}

// next collects n messages by section.
func (f inventoryFeed) next(t *testing.T, n int) map[string]wire.InventoryMessage {
	t.Helper()
	out := map[string]wire.InventoryMessage{}
	for len(out) < n {
		select {
		case m := <-f.ch:
			out[m.Section] = m
		case <-time.After(30 * time.Second):
			t.Fatalf("got %d of %d inventory messages: %v", len(out), n, out)
		}
	}
	return out
}

func refreshInventory(t *testing.T, nc *nats.Conn, pc string) {
	t.Helper()
	if _, err := nc.Request(wire.SubjectInventoryRefresh(pc), nil, 5*time.Second); err != nil {
		t.Fatalf("refresh: %v", err)
	}
}

// waitAcked waits until the agent has recorded n acknowledged sections.
func waitAcked(t *testing.T, dataDir string, n int) {
	t.Helper()
	waitFor(t, "acknowledged sections", func() bool {
		b, err := os.ReadFile(filepath.Join(dataDir, "inventory.json"))
		if err != nil {
			return false
		}
		var s struct{ Acked map[string]string }
		return json.Unmarshal(b, &s) == nil && len(s.Acked) == n
	})
}

func TestInventoryPublishesOnlyWhatChanged(t *testing.T) {
	srv := brokertest.Start(t)
	put(t, kv(t, srv.JetStream(t), wire.BucketAgentConfig), wire.ConfigKeyGlobal, `{"inventory_jitter":"0s"}`)
	nc := srv.Connect(t)
	feed := watchInventory(t, nc, "inv-pc")
	fake := &fakeInventory{}
	fake.setPrograms(wire.Program{Name: "7-Zip", Version: "23.01", Publisher: "Igor Pavlov"})
	dataDir := t.TempDir()
	startAgentWith(t, agent.Config{ID: "inv-pc", NATSURLs: []string{srv.URL()}, DataDir: dataDir, Inventory: fake})

	first := feed.next(t, 4)
	for _, sec := range wire.Sections() {
		m := first[sec]
		if m.Unchanged || len(m.Data) == 0 || len(m.Hash) != 64 {
			t.Fatalf("first %s message = %+v, want full data with a hash", sec, m)
		}
	}
	var sw wire.Software
	if err := json.Unmarshal(first[wire.SectionSoftware].Data, &sw); err != nil || len(sw.Programs) != 1 || sw.Programs[0].Name != "7-Zip" {
		t.Fatalf("software section = %s (%v)", first[wire.SectionSoftware].Data, err)
	}
	waitAcked(t, dataDir, 4)

	// Nothing changed: four markers, no data.
	refreshInventory(t, nc, "inv-pc")
	second := feed.next(t, 4)
	for sec, m := range second {
		if !m.Unchanged || len(m.Data) != 0 || m.Hash != first[sec].Hash {
			t.Errorf("second %s message = unchanged %v, %d data bytes; want a marker with the same hash", sec, m.Unchanged, len(m.Data))
		}
	}

	// One package changes: only the software section is sent in full.
	fake.setPrograms(wire.Program{Name: "7-Zip", Version: "24.08", Publisher: "Igor Pavlov"})
	refreshInventory(t, nc, "inv-pc")
	third := feed.next(t, 4)
	for sec, m := range third {
		full := !m.Unchanged && len(m.Data) > 0
		if full != (sec == wire.SectionSoftware) {
			t.Errorf("third %s message: full=%v, want full only for sw", sec, full)
		}
	}
	if !strings.Contains(string(third[wire.SectionSoftware].Data), "24.08") {
		t.Errorf("software section does not carry the new version: %s", third[wire.SectionSoftware].Data)
	}
	// The stream holds the history: 4 full + 4 markers + 3 markers + 1 full.
	js := srv.JetStream(t)
	waitFor(t, "12 messages in INVENTORY", func() bool { return streamMsgCount(t, js, wire.StreamInventory) == 12 })
}

func TestInventoryIntervalChangeTakesEffectLive(t *testing.T) {
	srv := brokertest.Start(t)
	cfg := kv(t, srv.JetStream(t), wire.BucketAgentConfig)
	put(t, cfg, wire.ConfigKeyGlobal, `{"inventory_jitter":"0s"}`)
	nc := srv.Connect(t)
	feed := watchInventory(t, nc, "inv-live")
	dataDir := t.TempDir()
	startAgentWith(t, agent.Config{ID: "inv-live", NATSURLs: []string{srv.URL()}, DataDir: dataDir, Inventory: &fakeInventory{}})
	feed.next(t, 4) // the first run, right away (jitter 0)
	waitAcked(t, dataDir, 4)

	// With the default 24 h interval nothing more would come today.
	put(t, cfg, wire.ConfigKeyGlobal, `{"inventory_jitter":"0s","inventory_interval":"10s"}`)
	changed := time.Now()
	feed.next(t, 4)
	if d := time.Since(changed); d > 25*time.Second {
		t.Fatalf("second run %s after the change, want about 10 s", d)
	}
}

func streamMsgCount(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}
