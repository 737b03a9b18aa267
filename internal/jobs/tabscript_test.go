package jobs_test

import (
	"strings"
	"testing"

	"github.com/kanade-project/kanade/internal/jobs"
	"github.com/kanade-project/kanade/internal/wire"
)

// TestCatalogKeepsScriptsThatStartWithATab: found by FuzzParseManifest. A
// script whose first line starts with a tab was stored as a YAML literal
// block that go-yaml cannot read back, so the job could be created but
// never loaded again. Each script below goes through a real KV bucket and
// comes back byte for byte; ordinary scripts stay readable blocks.
func TestCatalogKeepsScriptsThatStartWithATab(t *testing.T) {
	v := newEnv(t)
	ctx := testCtx(t)
	cat, err := jobs.OpenCatalog(ctx, v.js)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id, script string
		block      bool // stored as a literal block
	}{
		{"tab-first", "\tWrite-Output hi\n\tWrite-Output there\n", false},
		{"tab-only-line", "\t\necho x\n", false},
		{"tab-no-newline", "\techo x", false},
		{"tab-later", "if true; then\n\techo x\nfi\n", true},
		{"plain", "echo one\necho two\n", true},
	} {
		t.Run(tc.id, func(t *testing.T) {
			m := manifest(t, tc.id, "1")
			m.Execute.Script = tc.script
			m.Description = "kanade-00000000000000000000000000000000-0" // looks like a placeholder
			if _, err := cat.Put(ctx, m, 0); err != nil {
				t.Fatal(err)
			}
			e, err := cat.Get(ctx, tc.id)
			if err != nil {
				t.Fatalf("stored job does not load: %v", err)
			}
			if e.Manifest.Execute.Script != tc.script || e.Manifest.Description != m.Description {
				t.Fatalf("script %q description %q, want %q %q", e.Manifest.Execute.Script, e.Manifest.Description, tc.script, m.Description)
			}
			raw, err := v.kv(wire.BucketJobs).Get(ctx, tc.id)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := jobs.ParseStrict(raw.Value(), ""); err != nil {
				t.Fatalf("stored form is not strictly valid: %v\n%s", err, raw.Value())
			}
			if block := strings.Contains(string(raw.Value()), "script: |"); block != tc.block {
				t.Errorf("stored as a literal block: %v, want %v:\n%s", block, tc.block, raw.Value())
			}
		})
	}
}
