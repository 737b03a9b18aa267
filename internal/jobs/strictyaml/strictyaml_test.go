package strictyaml_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kanade-project/kanade/internal/jobs/strictyaml"
)

// TestReportKeepsAtMostMaxProblems: a document with many problems gets the
// first MaxProblems and a count of the rest, so a 1 MiB document of unknown
// keys cannot turn into a ten-megabyte error.
func TestReportKeepsAtMostMaxProblems(t *testing.T) {
	schema := []strictyaml.Field{{Name: "id", Kind: strictyaml.String}}
	for _, tc := range []struct {
		unknown  int
		kept     int
		notShown string
	}{
		{unknown: 1, kept: 1},
		{unknown: strictyaml.MaxProblems, kept: strictyaml.MaxProblems},
		{unknown: strictyaml.MaxProblems + 1, kept: strictyaml.MaxProblems, notShown: "1 more problems not shown"},
		{unknown: 100_000, kept: strictyaml.MaxProblems, notShown: fmt.Sprintf("%d more problems not shown", 100_000-strictyaml.MaxProblems)},
	} {
		t.Run(fmt.Sprint(tc.unknown), func(t *testing.T) {
			var doc strings.Builder
			doc.WriteString("id: a\n")
			for i := range tc.unknown {
				fmt.Fprintf(&doc, "k%d: 1\n", i)
			}
			root, err := strictyaml.Parse("test", []byte(doc.String()))
			if err != nil {
				t.Fatal(err)
			}
			r := strictyaml.NewReport("test")
			strictyaml.Check(r, root, schema)
			var e *strictyaml.Error
			if !errors.As(r.Err(), &e) {
				t.Fatalf("Err() = %v, want an *Error", r.Err())
			}
			want := tc.kept
			if tc.notShown != "" {
				want++
			}
			if len(e.Problems) != want {
				t.Fatalf("%d problems, want %d", len(e.Problems), want)
			}
			if !strings.HasPrefix(e.Problems[0].Msg, "unknown key") || e.Problems[0].Line != 2 {
				t.Errorf("first problem = %+v, want the first unknown key at line 2", e.Problems[0])
			}
			last := e.Problems[len(e.Problems)-1].Msg
			if tc.notShown != "" && !strings.HasPrefix(last, tc.notShown) {
				t.Errorf("last problem = %q, want it to start %q", last, tc.notShown)
			}
			if n := len(e.Error()); n > 100*strictyaml.MaxProblems+200 {
				t.Errorf("error is %d bytes", n)
			}
		})
	}
}

type label string

type marshalDoc struct {
	Name  string            `yaml:"name"`
	Ptr   *string           `yaml:"ptr,omitempty"`
	List  []string          `yaml:"list,omitempty"`
	Map   map[string]string `yaml:"map,omitempty"`
	Label label             `yaml:"label,omitempty"`
	At    time.Time         `yaml:"at"`
	Inner *marshalDoc       `yaml:"inner,omitempty"`
}

// TestMarshalReadsBack: whatever strings a document holds, and wherever
// (pointers, lists, maps, named string types, nested), Marshal's output
// reads back to the same document; go-yaml's own output does not when a
// multi-line string starts with a tab.
func TestMarshalReadsBack(t *testing.T) {
	tab := "\tfirst\nsecond\n"
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for name, doc := range map[string]marshalDoc{
		"plain":  {Name: "x", List: []string{"a\nb\n"}, At: at},
		"field":  {Name: tab, At: at},
		"ptr":    {Name: "x", Ptr: &tab, At: at},
		"list":   {Name: "x", List: []string{"ok", tab}, At: at},
		"map":    {Name: "x", Map: map[string]string{"k": tab}, At: at},
		"named":  {Name: "x", Label: label(tab), At: at},
		"nested": {Name: "x", At: at, Inner: &marshalDoc{Name: tab, List: []string{tab}}},
		"mimic":  {Name: tab, List: []string{"kanade-00000000000000000000000000000000-0", "kanade-unreadable-0"}, At: at},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := strictyaml.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			var back marshalDoc
			if err := yaml.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, doc) {
				t.Fatalf("read back %+v, %v; want %+v\n%s", back, err, doc, b)
			}
			if plain, err := yaml.Marshal(doc); err == nil && name == "plain" && string(plain) != string(b) {
				t.Errorf("a document go-yaml writes readably is written differently:\n%s\nwant\n%s", b, plain)
			}
		})
	}
}
