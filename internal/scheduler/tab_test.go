package scheduler_test

import (
	"testing"

	"github.com/kanade-project/kanade/internal/scheduler"
)

// TestStoredFormKeepsADescriptionThatStartsWithATab: the stored YAML of a
// schedule must read back whatever its free text holds; go-yaml cannot
// read the literal block it writes for text whose first line starts with
// a tab (found by FuzzParseManifest on scripts).
func TestStoredFormKeepsADescriptionThatStartsWithATab(t *testing.T) {
	for _, desc := range []string{"\tindented\nsecond line", "\t\n", "plain\n\ttab later"} {
		s, err := scheduler.ParseStrict([]byte("id: a\njob: b\ncron: \"@daily\"\ntarget: {all: true}\n"))
		if err != nil {
			t.Fatal(err)
		}
		s.Description = desc
		b, err := s.YAML()
		if err != nil {
			t.Fatal(err)
		}
		for name, parse := range map[string]func([]byte) (scheduler.Schedule, error){"strict": scheduler.ParseStrict, "lenient": scheduler.ParseLenient} {
			back, err := parse(b)
			if err != nil || back.Description != desc {
				t.Errorf("%q read %s: %q, %v\n%s", desc, name, back.Description, err, b)
			}
		}
	}
}
