package jobs_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/jobs"
	"github.com/kanade-project/kanade/internal/wire"
)

const goodManifest = `id: disk-cleanup
version: "1.2.0"
description: remove temp files
execute:
  shell: powershell
  script: |
    Remove-Item $env:TEMP\* -Recurse -Force
  timeout: 10m
  run_as: system
  cwd: C:\Windows\Temp
staleness:
  mode: strict
  max_cache_age: 1h
retry: {max: 2, backoff_secs: 30}
`

func TestParseStrictAcceptsAFullManifest(t *testing.T) {
	m, err := jobs.ParseStrict([]byte(goodManifest), "")
	if err != nil {
		t.Fatal(err)
	}
	want := jobs.Manifest{
		ID: "disk-cleanup", Version: "1.2.0", Description: "remove temp files",
		Execute: jobs.Execute{
			Shell: "powershell", Script: "Remove-Item $env:TEMP\\* -Recurse -Force\n",
			Timeout: jobs.Duration(10 * time.Minute), RunAs: "system", Cwd: `C:\Windows\Temp`,
		},
		Staleness: &jobs.Staleness{Mode: "strict", MaxCacheAge: jobs.Duration(time.Hour)},
		Retry:     &jobs.Retry{Max: 2, BackoffSecs: 30},
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got  %+v\nwant %+v", m, want)
	}
}

// TestParseStrictRejects: each bad manifest is refused with an error that
// names the key path, the line and the problem.
func TestParseStrictRejects(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"unknown key with its path", "id: a\nversion: \"1\"\nexecute:\n  shell: sh\n  scirpt: echo\n",
			[]string{"line 5: execute.scirpt: unknown key (expected one of shell, script, script_file, timeout, run_as, cwd)"}},
		{"unknown top-level key", "id: a\nversion: \"1\"\ndescripton: x\nexecute: {script: echo}\n",
			[]string{"line 3: descripton: unknown key (expected one of id, version, description, execute, staleness, retry)"}},
		{"unknown nested key in staleness", "id: a\nversion: \"1\"\nexecute: {script: echo}\nstaleness: {mode: cached, max_age: 1h}\n",
			[]string{"staleness.max_age: unknown key (expected one of mode, max_cache_age)"}},
		{"bad duration", "id: a\nversion: \"1\"\nexecute:\n  script: echo\n  timeout: 30x\n",
			[]string{"line 5: execute.timeout: invalid duration \"30x\""}},
		{"duration without unit", "id: a\nversion: \"1\"\nexecute:\n  script: echo\n  timeout: 30\n",
			[]string{"execute.timeout: invalid duration \"30\": expected a number with a unit"}},
		{"negative duration", "id: a\nversion: \"1\"\nexecute: {script: echo, timeout: -5s}\n",
			[]string{"execute.timeout: invalid duration \"-5s\": must not be negative"}},
		{"fractional timeout", "id: a\nversion: \"1\"\nexecute: {script: echo, timeout: 1500ms}\n",
			[]string{"execute.timeout: must be a whole number of seconds, got 1.5s"}},
		{"both script and script_file", "id: a\nversion: \"1\"\nexecute:\n  script: echo\n  script_file: x.sh\n",
			[]string{"line 3: execute: set either script or script_file, not both"}},
		{"neither script nor script_file", "id: a\nversion: \"1\"\nexecute:\n  shell: sh\n",
			[]string{"line 3: execute: script or script_file is required"}},
		{"blank script", "id: a\nversion: \"1\"\nexecute: {script: \"  \\n\"}\n",
			[]string{"execute.script: is blank"}},
		{"bad shell", "id: a\nversion: \"1\"\nexecute:\n  shell: zsh\n  script: echo\n",
			[]string{"line 4: execute.shell: unknown shell \"zsh\" (expected one of powershell, pwsh, cmd, sh, bash"}},
		{"bad run_as", "id: a\nversion: \"1\"\nexecute: {script: echo, run_as: root}\n",
			[]string{"execute.run_as: unknown value \"root\" (expected one of system, user)"}},
		{"bad id with a dot", "id: disk.cleanup\nversion: \"1\"\nexecute: {script: echo}\n",
			[]string{"line 1: id: job id \"disk.cleanup\" may contain only letters, digits, '-', '_' and '='"}},
		{"bad id with a space", "id: disk cleanup\nversion: \"1\"\nexecute: {script: echo}\n",
			[]string{"id: job id \"disk cleanup\" may contain only"}},
		{"bad id with a wildcard", "id: \"disk*\"\nversion: \"1\"\nexecute: {script: echo}\n",
			[]string{"id: job id \"disk*\" may contain only"}},
		{"bad version", "id: a\nversion: 1..2\nexecute: {script: echo}\n",
			[]string{"line 2: version: version \"1..2\" must not start or end with '.' or contain \"..\""}},
		{"version with a slash", "id: a\nversion: 1/2\nexecute: {script: echo}\n",
			[]string{"version: version \"1/2\" may contain only letters, digits, '-', '_' and '.'"}},
		{"missing id, version and execute", "description: x\n",
			[]string{"id: is required", "version: is required", "execute: is required"}},
		{"wrong type for execute", "id: a\nversion: \"1\"\nexecute: echo hi\n",
			[]string{"line 3: execute: expected a mapping (key: value), got \"echo hi\""}},
		{"wrong type for retry.max", "id: a\nversion: \"1\"\nexecute: {script: echo}\nretry: {max: many}\n",
			[]string{"line 4: retry.max: expected a whole number, got \"many\""}},
		{"retry.max out of range", "id: a\nversion: \"1\"\nexecute: {script: echo}\nretry: {max: 99}\n",
			[]string{"retry.max: must be between 0 and 10, got 99"}},
		{"bad staleness mode", "id: a\nversion: \"1\"\nexecute: {script: echo}\nstaleness: {mode: fresh}\n",
			[]string{"staleness.mode: unknown mode \"fresh\" (expected one of cached, strict, unchecked)"}},
		{"strict staleness without max age", "id: a\nversion: \"1\"\nexecute: {script: echo}\nstaleness: {mode: strict}\n",
			[]string{"staleness.max_cache_age: is required with mode strict"}},
		{"duplicate key", "id: a\nversion: \"1\"\nid: b\nexecute: {script: echo}\n",
			[]string{"line 3: id: duplicate key (first set at line 1)"}},
		{"two documents", "id: a\nversion: \"1\"\nexecute: {script: echo}\n---\nid: b\n",
			[]string{"only one YAML document is allowed"}},
		{"not YAML", "id: [a\n", []string{"invalid YAML"}},
		{"empty", "  \n", []string{"the document is empty"}},
		{"a list instead of a mapping", "- a\n- b\n", []string{"expected a mapping of keys to values, got a list"}},
		{"script_file without a base directory", "id: a\nversion: \"1\"\nexecute: {script_file: run.sh}\n",
			[]string{"execute.script_file: not accepted here: inline the script"}},
		{"unknown key in JSON", `{"id": "a", "version": "1",` + "\n" + `"execute": {"script": "echo", "tiemout": "5s"}}`,
			[]string{"line 2: execute.tiemout: unknown key"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := jobs.ParseStrict([]byte(c.yaml), "")
			if err == nil {
				t.Fatalf("accepted:\n%s", c.yaml)
			}
			var ve *jobs.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error is %T, not a *jobs.ValidationError: %v", err, err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestParseStrictReportsEveryProblemAtOnce(t *testing.T) {
	_, err := jobs.ParseStrict([]byte("id: a.b\nversion: \"1\"\nexecute:\n  shell: zsh\n  script: echo\n  timeout: soon\n  extra: 1\n"), "")
	var ve *jobs.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	// The key/type pass runs first (unknown key, bad duration); semantic
	// checks only run on a document that decoded.
	paths := map[string]bool{}
	for _, p := range ve.Problems {
		paths[p.Path] = true
	}
	for _, p := range []string{"execute.timeout", "execute.extra"} {
		if !paths[p] {
			t.Errorf("no problem reported at %s: %v", p, err)
		}
	}
}

func TestParseStrictInlinesScriptFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cleanup.sh"), []byte("rm -rf /tmp/x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := jobs.ParseStrict([]byte("id: a\nversion: \"1\"\nexecute: {shell: sh, script_file: cleanup.sh}\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Execute.Script != "rm -rf /tmp/x\n" || m.Execute.ScriptFile != "" {
		t.Fatalf("script %q, script_file %q", m.Execute.Script, m.Execute.ScriptFile)
	}
	b, err := m.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "script_file") || !strings.Contains(string(b), "rm -rf /tmp/x") {
		t.Fatalf("stored form does not inline the script:\n%s", b)
	}

	_, err = jobs.ParseStrict([]byte("id: a\nversion: \"1\"\nexecute: {script_file: missing.sh}\n"), dir)
	if err == nil || !strings.Contains(err.Error(), "execute.script_file: cannot read") {
		t.Fatalf("missing file: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cp932.bat"), []byte{0x83, 0x65, 0x83, 0x58, 0x83, 0x67}, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = jobs.ParseStrict([]byte("id: a\nversion: \"1\"\nexecute: {script_file: cp932.bat}\n"), dir)
	if err == nil || !strings.Contains(err.Error(), "is not UTF-8 text") {
		t.Fatalf("non-UTF-8 file: %v", err)
	}
}

func TestParseLenientIgnoresUnknownKeys(t *testing.T) {
	doc := `id: a
version: "2"
owner: ops            # a key a newer server may have added
execute:
  script: echo hi
  timeout: 30s
  priority: high
  sandbox: {enabled: true}
staleness: {mode: cached, max_cache_age: 5m, jitter: 1s}
`
	if _, err := jobs.ParseStrict([]byte(doc), ""); err == nil {
		t.Fatal("ParseStrict accepted unknown keys")
	}
	m, err := jobs.ParseLenient([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "a" || m.Version != "2" || m.Execute.Script != "echo hi" || m.Execute.Timeout.D() != 30*time.Second ||
		m.Staleness == nil || m.Staleness.MaxCacheAge.D() != 5*time.Minute {
		t.Fatalf("lenient read lost known fields: %+v", m)
	}
}

func TestCanonicalYAMLRoundTrips(t *testing.T) {
	m, err := jobs.ParseStrict([]byte(goodManifest), "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"timeout: 10m\n", "max_cache_age: 1h\n", "script: |\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("canonical YAML lacks %q:\n%s", want, b)
		}
	}
	again, err := jobs.ParseStrict(b, "")
	if err != nil {
		t.Fatalf("canonical form is not strictly valid: %v\n%s", err, b)
	}
	if !reflect.DeepEqual(again, m) {
		t.Fatalf("round trip changed the manifest:\n%+v\n%+v", again, m)
	}
}

func TestManifestCommand(t *testing.T) {
	m, err := jobs.ParseStrict([]byte(goodManifest), "")
	if err != nil {
		t.Fatal(err)
	}
	c := m.Command()
	want := wire.Command{
		ID: "disk-cleanup", Version: "1.2.0", Shell: "powershell",
		Script: "Remove-Item $env:TEMP\\* -Recurse -Force\n", TimeoutSecs: 600, RunAs: "system", Cwd: `C:\Windows\Temp`,
		Staleness: &wire.Staleness{Mode: "strict", MaxCacheAge: wire.Duration(time.Hour)},
		Retry:     &wire.Retry{Max: 2, BackoffSecs: 30},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
}

func TestDurationCanonicalForm(t *testing.T) {
	for d, want := range map[time.Duration]string{
		30 * time.Second:              "30s",
		10 * time.Minute:              "10m",
		90 * time.Minute:              "1h30m",
		6 * time.Hour:                 "6h",
		48 * time.Hour:                "2d",
		25 * time.Hour:                "25h",
		time.Hour + 30*time.Second:    "1h0m30s",
		1500 * time.Millisecond:       "1.5s",
		7*24*time.Hour + time.Minute:  "168h1m",
		0:                             "0s",
		2*time.Minute + 5*time.Second: "2m5s",
	} {
		if got := jobs.Duration(d).String(); got != want {
			t.Errorf("%v → %q, want %q", d, got, want)
		}
		if back, err := wire.ParseDuration(jobs.Duration(d).String()); err != nil || back != d {
			t.Errorf("%v does not round-trip: %v %v", d, back, err)
		}
	}
}
