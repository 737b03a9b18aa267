package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/wire"
)

// section builds a full inventory message from any JSON-encodable value,
// hashed the way agents hash it.
func section(t testing.TB, pc, sec string, at time.Time, v any) wire.InventoryMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return wire.InventoryMessage{PCID: pc, Section: sec, CollectedAt: at, Hash: hex.EncodeToString(h[:]), Data: b}
}

func applyInventory(t testing.TB, s *Store, msgs ...wire.InventoryMessage) {
	t.Helper()
	mustTx(t, s, func(tx *Tx) error {
		for _, m := range msgs {
			if err := tx.ApplyInventory(m); err != nil {
				return err
			}
		}
		return nil
	})
}

// searchFleet is a small fleet covering both shapes of a section (an object
// holding lists, and a bare list), JSON escaping, non-ASCII text, nested
// objects and lists of scalars.
func searchFleet(t *testing.T) *Store {
	s := openTemp(t)
	many := make([]wire.Program, 150)
	for i := range many {
		many[i] = wire.Program{Name: fmt.Sprintf("Plugin %03d for Firefox", i)}
	}
	applyInventory(t, s,
		section(t, "PC-A", wire.SectionSoftware, t0, wire.Software{
			Programs: []wire.Program{{Name: "7-Zip 24.08", Version: "24.08"}, {Name: "Mozilla Firefox 128", Version: "128.0", Publisher: "Mozilla"}},
			Hotfixes: []wire.Hotfix{{ID: "KB5034441"}},
		}),
		section(t, "PC-A", wire.SectionOS, t0, wire.OSInfo{Name: "Windows 11 Pro", Build: "22631"}),
		section(t, "PC-A", wire.SectionHardware, t0, wire.Hardware{Model: "ThinkPad T14", CPU: wire.CPU{Model: "Intel Core i7-1365U", Cores: 10}}),
		section(t, "PC-A", wire.SectionNetwork, t0, wire.Network{Interfaces: []wire.Interface{
			{Name: "lo", Up: true, IPv4: []string{"127.0.0.1"}},
			{Name: "eth0", Up: true, IPv4: []string{"192.168.1.5", "192.168.1.6"}},
			{Name: "wlan0", Up: false},
		}}),
		section(t, "PC-B", wire.SectionSoftware, t0.Add(time.Hour), wire.Software{
			Programs: []wire.Program{{Name: "AT&T Connect <beta>"}, {Name: "Firefox ESR"}, {Name: "サクラエディタ"}},
		}),
		section(t, "PC-B", wire.SectionOS, t0, wire.OSInfo{Name: "Ubuntu 24.04 LTS"}),
		// Another agent's shape: the section is a bare list of items.
		section(t, "PC-C", wire.SectionSoftware, t0, []map[string]any{{"name": "firefox", "version": "115"}, {"name": "100%_tool"}}),
		section(t, "PC-D", wire.SectionSoftware, t0, wire.Software{Programs: []wire.Program{{Name: "Chrome"}, {Name: `Backslash\Tool "Pro"`}}}),
		section(t, "PC-E", wire.SectionSoftware, t0, wire.Software{Programs: many}),
	)
	return s
}

// hitSummary is pc:path,path for comparisons.
func hitSummary(p InventoryPage) []string {
	var out []string
	for _, h := range p.Hits {
		var paths []string
		for _, it := range h.Items {
			paths = append(paths, it.Path)
		}
		if len(paths) > 3 {
			paths = append(paths[:3], fmt.Sprintf("…%d", len(h.Items)))
		}
		out = append(out, h.PCID+":"+strings.Join(paths, ","))
	}
	return out
}

func TestSearchInventoryMatchesObjectAndListSections(t *testing.T) {
	s := searchFleet(t)
	for _, tc := range []struct {
		name string
		q    InventoryQuery
		want []string
	}{
		{"contains, any case, both section shapes", InventoryQuery{Section: "software", Field: "name", Value: "FIREFOX"},
			[]string{"PC-A:$.programs[1]", "PC-B:$.programs[1]", "PC-C:$[0]", "PC-E:$.programs[0],$.programs[1],$.programs[2],…100"}},
		{"exact", InventoryQuery{Section: "sw", Field: "name", Value: "mozilla firefox 128", Match: MatchExact},
			[]string{"PC-A:$.programs[1]"}},
		{"prefix", InventoryQuery{Section: "sw", Field: "name", Value: "firefox", Match: MatchPrefix},
			[]string{"PC-B:$.programs[1]", "PC-C:$[0]"}},
		{"a value escaped in the stored JSON (& < >)", InventoryQuery{Section: "sw", Field: "name", Value: "at&t connect <BETA>", Match: MatchExact},
			[]string{"PC-B:$.programs[0]"}},
		{"a value with quotes and backslashes", InventoryQuery{Section: "sw", Field: "name", Value: `h\tool "pro`},
			[]string{"PC-D:$.programs[1]"}},
		{"non-ASCII", InventoryQuery{Section: "sw", Field: "name", Value: "サクラ", Match: MatchPrefix},
			[]string{"PC-B:$.programs[2]"}},
		{"LIKE wildcards are literals", InventoryQuery{Section: "sw", Field: "name", Value: "0%_t"},
			[]string{"PC-C:$[1]"}},
		{"a wildcard that would match, as a literal does not", InventoryQuery{Section: "sw", Field: "name", Value: "1%0"}, nil},
		{"another list of the same section", InventoryQuery{Section: "sw", Field: "id", Value: "kb5034441", Match: MatchExact},
			[]string{"PC-A:$.hotfixes[0]"}},
		{"an object section: the item is the section", InventoryQuery{Section: "os", Field: "name", Value: "windows 11"},
			[]string{"PC-A:$"}},
		{"a nested object and the section itself", InventoryQuery{Section: "hardware", Field: "model", Value: "t14"},
			[]string{"PC-A:$"}},
		{"a nested object", InventoryQuery{Section: "hw", Field: "model", Value: "i7"},
			[]string{"PC-A:$.cpu"}},
		{"a whole number", InventoryQuery{Section: "hw", Field: "cores", Value: "10", Match: MatchExact},
			[]string{"PC-A:$.cpu"}},
		{"a list of scalars names its item once", InventoryQuery{Section: "net", Field: "ipv4", Value: "192.168.1.", Match: MatchPrefix},
			[]string{"PC-A:$.interfaces[1]"}},
		{"a boolean", InventoryQuery{Section: "network", Field: "up", Value: "false", Match: MatchExact},
			[]string{"PC-A:$.interfaces[2]"}},
		{"one PC", InventoryQuery{Section: "sw", Field: "name", Value: "firefox", PCID: "PC-B"},
			[]string{"PC-B:$.programs[1]"}},
		{"a field no item has", InventoryQuery{Section: "sw", Field: "nosuchfield", Value: "firefox"}, nil},
		{"a key that holds a list of objects is not a scalar", InventoryQuery{Section: "sw", Field: "programs", Value: "firefox"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := s.SearchInventory(context.Background(), tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := hitSummary(p); !slices.Equal(got, tc.want) {
				t.Fatalf("hits = %q, want %q", got, tc.want)
			}
			if p.Next != "" {
				t.Errorf("next = %q on a single page", p.Next)
			}
		})
	}
}

func TestSearchInventoryReturnsItemsAndTimes(t *testing.T) {
	s := searchFleet(t)
	p, err := s.SearchInventory(context.Background(), InventoryQuery{Section: "sw", Field: "name", Value: "firefox"})
	if err != nil {
		t.Fatal(err)
	}
	a, b, e := p.Hits[0], p.Hits[1], p.Hits[3]
	var prog wire.Program
	if err := json.Unmarshal(a.Items[0].Data, &prog); err != nil || prog.Name != "Mozilla Firefox 128" || prog.Publisher != "Mozilla" || prog.Version != "128.0" {
		t.Errorf("item = %s (%v)", a.Items[0].Data, err)
	}
	if a.Section != wire.SectionSoftware || !a.CollectedAt.Equal(t0) || !a.ConfirmedAt.Equal(t0) || !b.CollectedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("hit metadata: %+v / %+v", a, b)
	}
	if len(e.Items) != SearchMaxItems || !e.MoreItems {
		t.Errorf("PC-E: %d items, more=%v; want %d and more", len(e.Items), e.MoreItems, SearchMaxItems)
	}
	if a.MoreItems {
		t.Error("PC-A flagged with more items")
	}
}

func TestSearchInventoryPagesByCursor(t *testing.T) {
	s := searchFleet(t)
	var got []string
	q := InventoryQuery{Section: "sw", Field: "name", Value: "fire", Limit: 1}
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("the cursor does not advance")
		}
		p, err := s.SearchInventory(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Hits) != 1 {
			t.Fatalf("page of %d hits, want 1", len(p.Hits))
		}
		got = append(got, p.Hits[0].PCID)
		if p.Next == "" {
			break
		}
		if p.Next != p.Hits[0].PCID {
			t.Fatalf("next = %q, want the page's last pc %q", p.Next, p.Hits[0].PCID)
		}
		q.After = p.Next
	}
	if want := []string{"PC-A", "PC-B", "PC-C", "PC-E"}; !slices.Equal(got, want) {
		t.Fatalf("pages = %v, want %v", got, want)
	}
}

func TestSearchInventoryRejectsBadInputNamingIt(t *testing.T) {
	s := searchFleet(t)
	ok := InventoryQuery{Section: "sw", Field: "name", Value: "x"}
	for _, tc := range []struct {
		name string
		edit func(*InventoryQuery)
		want string
	}{
		{"no section", func(q *InventoryQuery) { q.Section = "" }, "section is required"},
		{"unknown section", func(q *InventoryQuery) { q.Section = "sofware" }, `unknown section "sofware"`},
		{"no field", func(q *InventoryQuery) { q.Field = "" }, "field is required"},
		{"field with SQL", func(q *InventoryQuery) { q.Field = "name' OR 1=1 --" }, "field \"name' OR 1=1 --\" may contain only"},
		{"field with a path", func(q *InventoryQuery) { q.Field = "cpu.model" }, `field "cpu.model" may contain only`},
		{"long field", func(q *InventoryQuery) { q.Field = strings.Repeat("f", 65) }, "field is longer"},
		{"no value", func(q *InventoryQuery) { q.Value = "" }, "value is required"},
		{"long value", func(q *InventoryQuery) { q.Value = strings.Repeat("v", 257) }, "value is longer"},
		{"bad match", func(q *InventoryQuery) { q.Match = "regex" }, `match "regex"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := ok
			tc.edit(&q)
			_, err := s.SearchInventory(context.Background(), q)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}

// benchFleet fills a store with n PCs whose four sections look like a
// Windows fleet's: about 200 installed programs and 40 hotfixes each (about
// 25 KB of JSON), a few programs on most PCs and some on almost none.
func benchFleet(b *testing.B, s *Store, n int) {
	rng := rand.New(rand.NewPCG(1, 2))
	vendors := []string{"Microsoft", "Adobe", "Google", "Mozilla", "Oracle", "Intel", "NVIDIA", "Dell", "HP", "Lenovo", "Zoom", "Cisco", "VMware", "Citrix", "Autodesk"}
	pool := make([]wire.Program, 3000)
	for i := range pool {
		v := vendors[i%len(vendors)]
		pool[i] = wire.Program{Name: fmt.Sprintf("%s Product %04d (x64)", v, i), Version: fmt.Sprintf("%d.%d.%d.%d", i%30, i%7, i%100, i), Publisher: v + " Corporation", Source: "registry64", InstallDate: "20240115"}
	}
	common := []wire.Program{
		{Name: "Mozilla Firefox (x64 en-US)", Version: "128.0.3", Publisher: "Mozilla", Source: "registry64"},
		{Name: "Microsoft Edge", Version: "126.0.2592.87", Publisher: "Microsoft Corporation", Source: "registry32"},
		{Name: "Microsoft Visual C++ 2015-2022 Redistributable (x64) - 14.38.33135", Version: "14.38.33135.0", Publisher: "Microsoft Corporation", Source: "registry64"},
		{Name: "7-Zip 23.01 (x64)", Version: "23.01", Publisher: "Igor Pavlov", Source: "registry64"},
	}
	const batch = 250
	for start := 0; start < n; start += batch {
		var msgs []wire.InventoryMessage
		for i := start; i < min(start+batch, n); i++ {
			pc := fmt.Sprintf("PC-%05d", i)
			var sw wire.Software
			for j, p := range common {
				if rng.IntN(10) < 9-2*j { // 90 %, 70 %, 50 %, 30 %
					sw.Programs = append(sw.Programs, p)
				}
			}
			for range 200 - len(sw.Programs) {
				sw.Programs = append(sw.Programs, pool[rng.IntN(len(pool))])
			}
			if i%5000 == 42 { // two PCs in 10,000
				sw.Programs = append(sw.Programs, wire.Program{Name: "Rarely Installed Tool", Version: "1.0"})
			}
			for k := range 40 {
				sw.Hotfixes = append(sw.Hotfixes, wire.Hotfix{ID: fmt.Sprintf("KB50%05d", rng.IntN(99999)), Description: "Security Update", InstalledOn: "2024-0" + fmt.Sprint(1+k%9) + "-10"})
			}
			msgs = append(msgs,
				section(b, pc, wire.SectionSoftware, t0, sw),
				section(b, pc, wire.SectionOS, t0, wire.OSInfo{Name: []string{"Microsoft Windows 11 Pro", "Microsoft Windows 10 Pro"}[i%2], Version: "10.0", Build: fmt.Sprint(19045 + i%3000), Arch: "amd64"}),
				section(b, pc, wire.SectionHardware, t0, wire.Hardware{Manufacturer: "LENOVO", Model: fmt.Sprintf("ThinkPad T%d", 14+i%3), Serial: fmt.Sprintf("SN%08d", i), CPU: wire.CPU{Model: "Intel(R) Core(TM) i7-1365U", Cores: 10, LogicalProcessors: 12}, RAMBytes: 16 << 30, Disks: []wire.Disk{{ID: "C:", SizeBytes: 512 << 30, FreeBytes: 100 << 30}}}),
				section(b, pc, wire.SectionNetwork, t0, wire.Network{Interfaces: []wire.Interface{{Name: "Ethernet", MAC: fmt.Sprintf("00:11:22:%02x:%02x:%02x", i>>16&255, i>>8&255, i&255), Up: true, IPv4: []string{fmt.Sprintf("10.%d.%d.%d", i/65536, i/256%256, i%256)}}}}),
			)
		}
		applyInventory(b, s, msgs...)
	}
	if _, err := s.w.Exec(`ANALYZE`); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSearchInventory10k searches a 10,000-PC fleet (about 250 MB of
// software lists): first pages of common and rare values, values found
// nowhere (every section read), a JSON-escaped value (no raw pre-filter),
// one PC, and every page of a value on 90 % of the fleet.
//
//	go test -run '^$' -bench BenchmarkSearchInventory10k -benchtime 5x ./internal/store/
func BenchmarkSearchInventory10k(b *testing.B) {
	s := openTemp(b)
	benchFleet(b, s, 10_000)
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		q    InventoryQuery
		all  bool // walk every page
	}{
		{"sw_common_contains_page", InventoryQuery{Section: "sw", Field: "name", Value: "firefox"}, false},
		{"sw_common_exact_page", InventoryQuery{Section: "sw", Field: "name", Value: "7-zip 23.01 (x64)", Match: MatchExact}, false},
		{"sw_rare_contains", InventoryQuery{Section: "sw", Field: "name", Value: "rarely installed"}, false},
		{"sw_absent_contains", InventoryQuery{Section: "sw", Field: "name", Value: "no such program"}, false},
		{"sw_absent_escaped", InventoryQuery{Section: "sw", Field: "name", Value: "AT&T"}, false},
		{"sw_publisher_prefix_page", InventoryQuery{Section: "sw", Field: "publisher", Value: "citrix", Match: MatchPrefix}, false},
		{"sw_one_pc", InventoryQuery{Section: "sw", Field: "name", Value: "firefox", PCID: "PC-05000"}, false},
		{"os_exact_page", InventoryQuery{Section: "os", Field: "name", Value: "microsoft windows 10 pro", Match: MatchExact}, false},
		{"net_ipv4_one", InventoryQuery{Section: "net", Field: "ipv4", Value: "10.0.19.136", Match: MatchExact}, false},
		{"sw_common_all_pages", InventoryQuery{Section: "sw", Field: "name", Value: "firefox", Limit: 1000}, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var hits int
			for b.Loop() {
				hits = 0
				q := bc.q
				for {
					p, err := s.SearchInventory(ctx, q)
					if err != nil {
						b.Fatal(err)
					}
					hits += len(p.Hits)
					if !bc.all || p.Next == "" {
						break
					}
					q.After = p.Next
				}
			}
			b.ReportMetric(float64(hits), "pcs")
		})
	}
}
