package jobs_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kanade-project/kanade/internal/jobs"
	"github.com/kanade-project/kanade/internal/wire"
)

// checkRefusal fails unless err is a *jobs.ValidationError whose every
// problem says something: the API answers it as a 400 listing them.
func checkRefusal(t *testing.T, in []byte, err error) {
	t.Helper()
	var ve *jobs.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("refused %q with %T, not a *jobs.ValidationError: %v", in, err, err)
	}
	if len(ve.Problems) == 0 {
		t.Fatalf("refused %q without naming a problem", in)
	}
	for _, p := range ve.Problems {
		if strings.TrimSpace(p.Msg) == "" || p.Line < 0 {
			t.Fatalf("refused %q with an empty problem: %+v", in, p)
		}
	}
}

// FuzzParseManifest feeds job manifests (YAML or JSON, as the API and the
// CLI receive them) to the strict parser. What it refuses is a list of
// problems with messages; what it accepts passes Validate, builds a
// command the agent accepts (valid id and version, a script that is
// neither blank nor too long nor invalid UTF-8, a known shell, timeouts in
// whole non-negative seconds) and is stored in a canonical YAML that reads
// back, strictly and leniently, to the same manifest — and so does its
// JSON form.
func FuzzParseManifest(f *testing.F) {
	for _, s := range []string{
		"id: disk-cleanup\nversion: \"1.2.0\"\nexecute:\n  shell: powershell\n  script: |\n    Remove-Item $env:TEMP\\* -Recurse\n  timeout: 10m\n  run_as: system\n  cwd: C:\\Windows\\Temp\nstaleness: {mode: strict, max_cache_age: 1h}\nretry: {max: 2, backoff_secs: 30}\n",
		`{"id":"a","version":"1","execute":{"script":"echo","timeout":"30s"}}`,
		"id: a\nversion: \"1\"\nexecute: {script: \"  \\n\"}\n",
		"id: a\nversion: 1..2\nexecute: {script_file: ../../etc/passwd}\n",
		"a: &a [x, x]\nb: &b [*a, *a]\nid: a\nversion: \"1\"\nexecute: {script: echo}\ndescription: *b\n",
		"id: a\nversion: \"1\"\nexecute: {script: echo, timeout: 9999999999999d}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := jobs.ParseStrict(in, "")
		if err != nil {
			checkRefusal(t, in, err)
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("ParseStrict accepted %q, Validate refuses it: %v", in, err)
		}
		if jobs.CheckID("job id", m.ID) != nil || jobs.CheckVersion(m.Version) != nil || !wire.ValidToken(m.ID) {
			t.Fatalf("accepted %q with id %q version %q", in, m.ID, m.Version)
		}
		e := m.Execute
		if e.ScriptFile != "" || strings.TrimSpace(e.Script) == "" || len(e.Script) > jobs.MaxScriptBytes || !utf8.ValidString(e.Script) {
			t.Fatalf("accepted %q with an unusable script: %+v", in, e)
		}
		if e.Shell != "" && !slices.Contains(jobs.Shells, e.Shell) {
			t.Fatalf("accepted %q with shell %q", in, e.Shell)
		}
		c := m.Command()
		if c.TimeoutSecs < 0 || e.Timeout.D() != time.Duration(c.TimeoutSecs)*time.Second {
			t.Fatalf("accepted %q with timeout %s, commanded as %d s", in, e.Timeout, c.TimeoutSecs)
		}
		if c.Retry != nil && (c.Retry.Max < 0 || c.Retry.Max > jobs.MaxRetries || c.Retry.BackoffSecs < 0) {
			t.Fatalf("accepted %q with retry %+v", in, c.Retry)
		}
		if s := c.Staleness; s != nil && (s.MaxCacheAge < 0 || s.Mode == wire.StalenessStrict && s.MaxCacheAge == 0) {
			t.Fatalf("accepted %q with staleness %+v", in, s)
		}

		stored, err := m.YAML()
		if err != nil {
			t.Fatalf("accepted %q, cannot store it: %v", in, err)
		}
		for name, parse := range map[string]func([]byte) (jobs.Manifest, error){
			"strict":  func(b []byte) (jobs.Manifest, error) { return jobs.ParseStrict(b, "") },
			"lenient": jobs.ParseLenient,
		} {
			back, err := parse(stored)
			if err != nil || !sameJSON(t, back, m) {
				t.Fatalf("stored form of %q read %s: %v\n%+v\nwant %+v\nstored:\n%s", in, name, err, back, m, stored)
			}
		}
		js, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("accepted %q, cannot encode it as JSON: %v", in, err)
		}
		if back, err := jobs.ParseStrict(js, ""); err != nil || !sameJSON(t, back, m) {
			t.Fatalf("JSON form of %q read back: %v\n%+v\nwant %+v\njson: %s", in, err, back, m, js)
		}
	})
}

// FuzzParsePlan feeds plans (who runs a job and when) to the strict
// parser. What it accepts selects someone with names usable as subject
// tokens, has non-negative whole-second jitter, waves that start at once
// and span at most MaxRolloutSpan, and reads back identically from its
// JSON form.
func FuzzParsePlan(f *testing.F) {
	for _, s := range []string{
		"rollout:\n  waves:\n    - group: canary\n    - {group: wave1, delay: 30m}\n  stop_if_failed_pct: 20\njitter: 1m\ndeadline: 2h\n",
		`{"target": {"groups": ["site\/paris"], "pcs": ["pc-1"]}, "deadline_at": "2026-01-02T15:04:05Z"}`,
		"target: {all: true}\nexec_id: nightly-1\n",
		"target: {pcs: [a, a, \"x.y\", \"\"]}\n",
		"rollout:\n  waves:\n    - group: a\n    - {group: b, delay: 106751d}\n    - {group: c, delay: 106751d}\n",
		"rollout: {waves: [{group: a}], stop_if_failed_pct: .nan}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := jobs.ParsePlan(in)
		if err != nil {
			checkRefusal(t, in, err)
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("ParsePlan accepted %q, Validate refuses it: %v", in, err)
		}
		if p.Jitter < 0 || p.Jitter%jobs.Duration(time.Second) != 0 || p.Deadline < 0 {
			t.Fatalf("accepted %q with jitter %s deadline %s", in, p.Jitter, p.Deadline)
		}
		var names []string
		if ro := p.Rollout; ro != nil && len(ro.Waves) > 0 {
			if !p.Target.IsZero() || ro.Waves[0].Delay != 0 || !(ro.StopIfFailedPct >= 0 && ro.StopIfFailedPct <= 100) {
				t.Fatalf("accepted %q with rollout %+v target %+v", in, ro, p.Target)
			}
			var span time.Duration
			for _, w := range ro.Waves {
				if w.Delay < 0 || w.Delay.D() > jobs.MaxRolloutSpan-span {
					t.Fatalf("accepted %q whose waves span more than %s: %+v", in, jobs.MaxRolloutSpan, ro.Waves)
				}
				span += w.Delay.D()
				names = append(names, w.Group)
			}
		} else {
			if p.Target.IsZero() {
				t.Fatalf("accepted %q that selects nobody", in)
			}
			names = append(append(names, p.Target.Groups...), p.Target.PCs...)
		}
		for _, n := range names {
			if !wire.ValidToken(n) {
				t.Fatalf("accepted %q naming %q, not a subject token", in, n)
			}
		}
		js, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("accepted %q, cannot encode it as JSON: %v", in, err)
		}
		back, err := jobs.ParsePlan(js)
		if err != nil || !sameJSON(t, back, p) {
			t.Fatalf("JSON form of %q read back: %v\n%+v\nwant %+v\njson: %s", in, err, back, p, js)
		}
	})
}

// sameJSON reports whether a and b encode to the same JSON: equal for
// every use, where reflect.DeepEqual would tell an empty list from none
// (both select nothing) and two decodes of one UTC offset apart (their
// *time.Location pointers differ).
func sameJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(ja) == string(jb)
}
