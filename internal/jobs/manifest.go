// Package jobs is the job catalog and the executor of the backend.
//
// A job manifest is YAML (JSON is accepted too):
//
//	id: disk-cleanup
//	version: "3"
//	description: remove temp files
//	execute:
//	  shell: powershell          # powershell|pwsh|cmd|sh|bash, or empty for the agent's default
//	  script: |                  # or script_file: cleanup.ps1 (read at write time, inlined)
//	    Remove-Item $env:TEMP\* -Recurse -Force
//	  timeout: 10m
//	  run_as: system             # system|user
//	  cwd: C:\Windows\Temp
//	staleness: {mode: cached, max_cache_age: 1h}
//	retry: {max: 2, backoff_secs: 30}
//
// Writes are strict (ParseStrict: unknown keys and bad values are refused
// with their path and line); reads are lenient (ParseLenient: unknown keys
// are ignored, so a newer server's manifests still load). The catalog stores
// each manifest in KV "jobs" under its id as canonical YAML (Manifest.YAML):
// the script is inlined, keys are in a fixed order, durations in short form.
// YAML rather than JSON because operators read and write manifests as YAML
// (API, CLI, `nats kv get jobs <id>`), and scripts stay readable as block
// literals.
package jobs

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/kanade-project/kanade/internal/fleetconfig"
	"github.com/kanade-project/kanade/internal/jobs/strictyaml"
	"github.com/kanade-project/kanade/internal/wire"
)

// ValidationError is returned by every strict parse: the list of problems,
// each with its key path and line. Nothing was written.
type ValidationError = strictyaml.Error

// Problem is one entry of a ValidationError.
type Problem = strictyaml.Problem

// MaxScriptBytes caps a script: the command carrying it must fit in one
// NATS message (1 MiB) after JSON escaping.
const MaxScriptBytes = 256 << 10

// MaxRetries caps retry.max.
const MaxRetries = 10

// Manifest is one job of the catalog.
type Manifest struct {
	ID          string     `yaml:"id" json:"id"`
	Version     string     `yaml:"version" json:"version"`
	Description string     `yaml:"description,omitempty" json:"description,omitempty"`
	Execute     Execute    `yaml:"execute" json:"execute"`
	Staleness   *Staleness `yaml:"staleness,omitempty" json:"staleness,omitempty"`
	Retry       *Retry     `yaml:"retry,omitempty" json:"retry,omitempty"`
}

// Execute says how the agent runs the job.
type Execute struct {
	Shell  string `yaml:"shell,omitempty" json:"shell,omitempty"`
	Script string `yaml:"script,omitempty" json:"script,omitempty"`
	// ScriptFile is only ever set in a document being written: ParseStrict
	// reads the file and moves its text into Script.
	ScriptFile string   `yaml:"script_file,omitempty" json:"script_file,omitempty"`
	Timeout    Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	RunAs      string   `yaml:"run_as,omitempty" json:"run_as,omitempty"`
	Cwd        string   `yaml:"cwd,omitempty" json:"cwd,omitempty"`
}

// Staleness is the freshness the agent's cached pin/revocation view needs.
type Staleness struct {
	Mode        string   `yaml:"mode,omitempty" json:"mode,omitempty"`
	MaxCacheAge Duration `yaml:"max_cache_age,omitempty" json:"max_cache_age,omitempty"`
}

// Retry asks the agent to rerun a failed attempt.
type Retry struct {
	Max         int `yaml:"max" json:"max"`
	BackoffSecs int `yaml:"backoff_secs,omitempty" json:"backoff_secs,omitempty"`
}

// Shells lists the accepted values of execute.shell ("" = agent default).
var Shells = []string{wire.ShellPowerShell, wire.ShellPwsh, wire.ShellCmd, wire.ShellSh, wire.ShellBash}

var runAs = []string{"system", "user"}

var stalenessModes = []string{wire.StalenessCached, wire.StalenessStrict, wire.StalenessUnchecked}

func manifestSchema() []strictyaml.Field {
	return []strictyaml.Field{
		{Name: "id", Kind: strictyaml.String, Required: true},
		{Name: "version", Kind: strictyaml.String, Required: true},
		{Name: "description", Kind: strictyaml.String},
		{Name: "execute", Kind: strictyaml.Map, Required: true, Fields: []strictyaml.Field{
			{Name: "shell", Kind: strictyaml.String},
			{Name: "script", Kind: strictyaml.String},
			{Name: "script_file", Kind: strictyaml.String},
			{Name: "timeout", Kind: strictyaml.Duration},
			{Name: "run_as", Kind: strictyaml.String},
			{Name: "cwd", Kind: strictyaml.String},
		}},
		{Name: "staleness", Kind: strictyaml.Map, Fields: []strictyaml.Field{
			{Name: "mode", Kind: strictyaml.String},
			{Name: "max_cache_age", Kind: strictyaml.Duration},
		}},
		{Name: "retry", Kind: strictyaml.Map, Fields: []strictyaml.Field{
			{Name: "max", Kind: strictyaml.Int, Required: true},
			{Name: "backoff_secs", Kind: strictyaml.Int},
		}},
	}
}

// ParseStrict reads a manifest being written. Unknown keys, wrongly typed
// values, bad durations, shells, ids and versions are all reported at once
// in a *ValidationError, each with its path and line. execute.script_file
// is read relative to baseDir and inlined into Execute.Script; with an
// empty baseDir (the HTTP API: the server must not read its own files on a
// client's behalf) script_file is refused.
func ParseStrict(data []byte, baseDir string) (Manifest, error) {
	const what = "job manifest"
	root, err := strictyaml.Parse(what, data)
	if err != nil {
		return Manifest{}, err
	}
	r := strictyaml.NewReport(what)
	strictyaml.Check(r, root, manifestSchema())
	if err := r.Err(); err != nil {
		return Manifest{}, err
	}
	var m Manifest
	if err := root.Decode(&m); err != nil {
		r.Add("", "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		return Manifest{}, r.Err()
	}
	if m.Execute.ScriptFile != "" {
		m.readScriptFile(r, baseDir)
	}
	m.validate(r)
	if err := r.Err(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

func (m *Manifest) readScriptFile(r *strictyaml.Report, baseDir string) {
	const p = "execute.script_file"
	if m.Execute.Script != "" {
		return // reported by validate
	}
	if baseDir == "" {
		r.Add(p, "not accepted here: inline the script with execute.script (the CLI inlines script_file before sending)")
		return
	}
	path := m.Execute.ScriptFile
	if !filepath.IsAbs(path) {
		path = filepath.Join(baseDir, path)
	}
	st, err := os.Stat(path)
	if err != nil {
		r.Add(p, "cannot read %s: %v", path, err)
		return
	}
	if st.Size() > MaxScriptBytes {
		r.Add(p, "%s is %d bytes; a script may have at most %d", path, st.Size(), MaxScriptBytes)
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		r.Add(p, "cannot read %s: %v", path, err)
		return
	}
	if !utf8.Valid(b) {
		r.Add(p, "%s is not UTF-8 text (save it as UTF-8)", path)
		return
	}
	m.Execute.Script = string(b)
	m.Execute.ScriptFile = ""
}

// ParseLenient reads a stored manifest: unknown keys are ignored, and only
// values that cannot be decoded at all are errors.
func ParseLenient(data []byte) (Manifest, error) {
	var m Manifest
	if err := yaml.Unmarshal(data, &m); err != nil {
		return Manifest{}, fmt.Errorf("reading job manifest: %w", err)
	}
	if m.ID == "" {
		return Manifest{}, fmt.Errorf("reading job manifest: no id")
	}
	return m, nil
}

// Validate checks a manifest built in code (ParseStrict already did).
func (m Manifest) Validate() error {
	r := strictyaml.NewReport("job manifest")
	if m.Execute.ScriptFile != "" {
		r.Add("execute.script_file", "must be inlined into execute.script before storing")
	}
	m.validate(r)
	return r.Err()
}

func (m Manifest) validate(r *strictyaml.Report) {
	if m.ID != "" {
		if err := CheckID("job id", m.ID); err != nil {
			r.Add("id", "%s", err.Error())
		}
	} else {
		r.Add("id", "is required")
	}
	if m.Version != "" {
		if err := CheckVersion(m.Version); err != nil {
			r.Add("version", "%s", err.Error())
		}
	} else {
		r.Add("version", "is required")
	}
	e := m.Execute
	switch {
	case e.Script != "" && e.ScriptFile != "":
		r.Add("execute", "set either script or script_file, not both")
	case e.Script == "" && e.ScriptFile == "":
		r.Add("execute", "script or script_file is required")
	case e.Script != "" && strings.TrimSpace(e.Script) == "":
		r.Add("execute.script", "is blank")
	case len(e.Script) > MaxScriptBytes:
		r.Add("execute.script", "is %d bytes; a script may have at most %d", len(e.Script), MaxScriptBytes)
	case e.Script != "" && !utf8.ValidString(e.Script):
		r.Add("execute.script", "is not valid UTF-8")
	}
	if e.Shell != "" && !slices.Contains(Shells, e.Shell) {
		r.Add("execute.shell", "unknown shell %q (expected one of %s, or leave it empty for the agent's platform default)", e.Shell, strings.Join(Shells, ", "))
	}
	if e.RunAs != "" && !slices.Contains(runAs, e.RunAs) {
		r.Add("execute.run_as", "unknown value %q (expected one of %s)", e.RunAs, strings.Join(runAs, ", "))
	}
	if e.Timeout < 0 {
		r.Add("execute.timeout", "must not be negative")
	} else if e.Timeout%Duration(time.Second) != 0 {
		r.Add("execute.timeout", "must be a whole number of seconds, got %s", e.Timeout)
	}
	if strings.ContainsRune(e.Cwd, 0) {
		r.Add("execute.cwd", "contains a NUL character")
	}
	if s := m.Staleness; s != nil {
		if s.Mode != "" && !slices.Contains(stalenessModes, s.Mode) {
			r.Add("staleness.mode", "unknown mode %q (expected one of %s)", s.Mode, strings.Join(stalenessModes, ", "))
		}
		if s.MaxCacheAge < 0 {
			r.Add("staleness.max_cache_age", "must not be negative")
		}
		if s.Mode == wire.StalenessStrict && s.MaxCacheAge == 0 {
			r.Add("staleness.max_cache_age", "is required with mode strict")
		}
	}
	if rt := m.Retry; rt != nil {
		if rt.Max < 0 || rt.Max > MaxRetries {
			r.Add("retry.max", "must be between 0 and %d, got %d", MaxRetries, rt.Max)
		}
		if rt.BackoffSecs < 0 || rt.BackoffSecs > 3600 {
			r.Add("retry.backoff_secs", "must be between 0 and 3600, got %d", rt.BackoffSecs)
		}
	}
}

// CheckID validates a job or schedule id. Ids are KV keys (jobs,
// script_current, script_status, schedules) and the agent checks the job
// id as a NATS subject token, so the stricter of the two rules applies:
// fleetconfig.CheckKeyToken (letters, digits, '-', '_', '='; 1-128
// characters; no dots). wire.CheckToken alone would accept dots-free
// Unicode that is not a valid KV key.
func CheckID(what, id string) error { return fleetconfig.CheckKeyToken(what, id) }

// CheckVersion validates a job version: 1-64 characters among letters,
// digits, '-', '_' and '.', not starting or ending with a dot and without
// "..". A version is a KV value (script_current) and a Command field, never
// a subject token, so dots are allowed ("1.2.0"); it is still a valid KV
// key should one ever be keyed by version.
func CheckVersion(v string) error {
	if v == "" || len(v) > 64 {
		return fmt.Errorf("version %q must be 1-64 characters", v)
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("version %q may contain only letters, digits, '-', '_' and '.'", v)
		}
	}
	if strings.HasPrefix(v, ".") || strings.HasSuffix(v, ".") || strings.Contains(v, "..") {
		return fmt.Errorf("version %q must not start or end with '.' or contain \"..\"", v)
	}
	return nil
}

// YAML returns the canonical stored form of the manifest.
func (m Manifest) YAML() ([]byte, error) {
	return strictyaml.Marshal(m)
}

// Command builds the command template of the job: id, version, shell,
// script, timeout, run_as, cwd, staleness and retry. The executor fills
// request_id, exec_id, jitter_secs and deadline_at per publish.
func (m Manifest) Command() wire.Command {
	c := wire.Command{
		ID:          m.ID,
		Version:     m.Version,
		Shell:       m.Execute.Shell,
		Script:      m.Execute.Script,
		TimeoutSecs: int(m.Execute.Timeout.D() / time.Second),
		RunAs:       m.Execute.RunAs,
		Cwd:         m.Execute.Cwd,
	}
	if s := m.Staleness; s != nil && (s.Mode != "" || s.MaxCacheAge != 0) {
		c.Staleness = &wire.Staleness{Mode: s.Mode, MaxCacheAge: wire.Duration(s.MaxCacheAge)}
	}
	if r := m.Retry; r != nil && r.Max > 0 {
		c.Retry = &wire.Retry{Max: r.Max, BackoffSecs: r.BackoffSecs}
	}
	return c
}
