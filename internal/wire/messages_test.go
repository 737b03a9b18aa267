package wire

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// Fixed instants keep the goldens stable; nanoseconds prove RFC 3339 with
// sub-second precision survives the trip.
var (
	t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	t1 = time.Date(2025, 6, 1, 12, 0, 1, 250_000_000, time.UTC)
	t2 = time.Date(2025, 6, 1, 12, 0, 9, 123_456_789, time.UTC)
)

func ptr[T any](v T) *T { return &v }

// goldenCase is one message type: a fully populated value and the golden
// file holding its exact wire bytes.
type goldenCase struct {
	file  string
	value any        // pointer to a fully populated value
	fresh func() any // returns a pointer to a zero value of the same type
}

func goldenCases() []goldenCase {
	return []goldenCase{
		{
			file: "command.json",
			value: &Command{
				ID:          "patch-tuesday",
				Version:     "3",
				RequestID:   "req-01HZY",
				ExecID:      "exec-01HZY-7",
				Shell:       ShellPowerShell,
				Script:      "Get-Service | Where-Object {$_.Status -eq 'Running'}\nWrite-Output \"東京 & <ok>\"",
				TimeoutSecs: 300,
				JitterSecs:  30,
				DeadlineAt:  ptr(t2),
				Staleness:   &Staleness{Mode: StalenessStrict, MaxCacheAge: Duration(10 * time.Minute)},
				Cwd:         `C:\Temp`,
				RunAs:       "system",
				Retry:       &Retry{Max: 2, BackoffSecs: 15},
			},
			fresh: func() any { return new(Command) },
		},
		{
			file: "exec_result.json",
			value: &ExecResult{
				ResultID:     "res-PC-東京-01HZY",
				RequestID:    "req-01HZY",
				ExecID:       "exec-01HZY-7",
				JobID:        "patch-tuesday",
				Version:      "3",
				PCID:         "PC-東京",
				ExitCode:     124,
				Skipped:      true,
				Stdout:       "line 1\nline 2\n",
				Stderr:       "version pin mismatch: want 4, got 3\n",
				StdoutObject: "res-PC-東京-01HZY.stdout",
				StderrObject: "res-PC-東京-01HZY.stderr",
				StartedAt:    t1,
				FinishedAt:   t2,
				ManifestID:   "manifest-42",
				Attempts:     2,
				TimedOut:     true,
			},
			fresh: func() any { return new(ExecResult) },
		},
		{
			file: "event_started.json",
			value: &EventStarted{
				ResultID:  "res-PC1-01HZY",
				RequestID: "req-01HZY",
				ExecID:    "exec-01HZY-7",
				JobID:     "patch-tuesday",
				PCID:      "PC1",
				StartedAt: t1,
			},
			fresh: func() any { return new(EventStarted) },
		},
		{
			file: "heartbeat.json",
			value: &Heartbeat{
				PCID:                   "PC1",
				At:                     t0,
				AgentVersion:           "1.4.2",
				Hostname:               "pc1.corp.example",
				OSFamily:               "windows",
				Arch:                   "amd64",
				MachineID:              "4C4C4544-0042-3510-8051-B7C04F305032",
				AgentRSSBytes:          11_534_336,
				AgentCPUPct:            ptr(0.25),
				OutboxDepth:            3,
				QuarantinedVersions:    []string{"1.4.0", "1.4.1"},
				HeartbeatIntervalSecs:  30,
				Groups:                 []string{"accounting", "tokyo"},
				CommandKeyFingerprints: KeyIDs{"34750f98bd59fcfc", "9f86d081884c7d65"},
				CommandSigning:         CommandSigningEnforced,
			},
			fresh: func() any { return new(Heartbeat) },
		},
		{
			file: "obs_event.json",
			value: &ObsEvent{
				PCID:          "PC1",
				At:            t0,
				Kind:          ObsAgentUpdate,
				Source:        "agent",
				EventRecordID: "boot-17",
				Payload:       json.RawMessage(`{"from":"1.4.1","to":"1.4.2"}`),
			},
			fresh: func() any { return new(ObsEvent) },
		},
	}
}

// jsonFieldNames lists the JSON names of the exported fields of struct type t.
func jsonFieldNames(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

func TestGoldenRoundTrip(t *testing.T) {
	for _, tc := range goldenCases() {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			got, err := json.Marshal(tc.value)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			got = append(got, '\n')
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (run with -update to create it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("marshalled bytes differ from the golden wire format %s:\n got: %s\nwant: %s", path, got, want)
			}

			// The golden must really be "fully populated": every field of
			// the type appears, so a field added later without updating the
			// golden is noticed here.
			var keys map[string]json.RawMessage
			if err := json.Unmarshal(want, &keys); err != nil {
				t.Fatalf("golden is not a JSON object: %v", err)
			}
			for _, name := range jsonFieldNames(reflect.TypeOf(tc.value).Elem()) {
				if _, ok := keys[name]; !ok {
					t.Errorf("golden %s lacks field %q: populate it in goldenCases and run -update", path, name)
				}
			}

			back := tc.fresh()
			if err := json.Unmarshal(want, back); err != nil {
				t.Fatalf("decode golden: %v", err)
			}
			if !reflect.DeepEqual(back, tc.value) {
				t.Errorf("decoding the golden does not give the original value:\n got: %#v\nwant: %#v", back, tc.value)
			}
		})
	}
}

func TestDecodeIgnoresUnknownFields(t *testing.T) {
	const future = `"future_field":{"nested":[1,"two",{"three":null}],"flag":true}`
	for _, tc := range goldenCases() {
		golden, err := os.ReadFile(filepath.Join("testdata", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		golden = bytes.TrimSpace(golden)
		inputs := map[string][]byte{
			"first": append([]byte("{"+future+","), golden[1:]...),
			"last":  append(append(append([]byte{}, golden[:len(golden)-1]...), ","+future...), '}'),
		}
		for where, in := range inputs {
			t.Run(tc.file+"/"+where, func(t *testing.T) {
				got := tc.fresh()
				if err := json.Unmarshal(in, got); err != nil {
					t.Fatalf("an unknown field must not fail the decode: %v\ninput: %s", err, in)
				}
				if !reflect.DeepEqual(got, tc.value) {
					t.Errorf("an unknown field changed the decoded value:\n got: %#v\nwant: %#v", got, tc.value)
				}
			})
		}
	}
}

func TestCommandJobIDAlias(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"exec_id alone", `{"id":"j","request_id":"r","exec_id":"E","script":"x"}`, "E"},
		{"job_id alone is taken as exec_id", `{"id":"j","request_id":"r","job_id":"J","script":"x"}`, "J"},
		{"both, exec_id first: exec_id wins", `{"exec_id":"E","job_id":"J"}`, "E"},
		{"both, job_id first: exec_id wins", `{"job_id":"J","exec_id":"E"}`, "E"},
		{"empty exec_id counts as absent", `{"exec_id":"","job_id":"J"}`, "J"},
		{"null exec_id counts as absent", `{"exec_id":null,"job_id":"J"}`, "J"},
		{"neither gives empty", `{"id":"j"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Command
			if err := json.Unmarshal([]byte(tt.in), &c); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if c.ExecID != tt.want {
				t.Errorf("ExecID = %q, want %q", c.ExecID, tt.want)
			}
			out, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(out, []byte(`"job_id"`)) {
				t.Errorf("a Command is re-encoded with exec_id only, never job_id: %s", out)
			}
		})
	}
}

func TestCommandDecodeKeepsOtherFieldsAndErrors(t *testing.T) {
	var c Command
	in := `{"id":"j","version":"2","request_id":"r","job_id":"J","shell":"bash","script":"echo","timeout_secs":5,"staleness":{"mode":"cached","max_cache_age":"7d"}}`
	if err := json.Unmarshal([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	want := Command{ID: "j", Version: "2", RequestID: "r", ExecID: "J", Shell: "bash", Script: "echo", TimeoutSecs: 5,
		Staleness: &Staleness{Mode: StalenessCached, MaxCacheAge: Duration(7 * 24 * time.Hour)}}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("the job_id alias must not disturb the other fields:\n got: %#v\nwant: %#v", c, want)
	}

	for _, bad := range []string{`{"timeout_secs":"30"}`, `[1,2]`, `"cmd"`, `{"staleness":{"max_cache_age":"-1m"}}`} {
		if err := json.Unmarshal([]byte(bad), new(Command)); err == nil {
			t.Errorf("a malformed Command %s must be a decode error", bad)
		}
	}
}

func TestOptionalFieldsOmittedWhenEmpty(t *testing.T) {
	tests := []struct {
		name   string
		value  any
		want   string
		absent []string
	}{
		{
			name:  "minimal Command",
			value: Command{ID: AdhocJobID, RequestID: "r1", ExecID: "e1", Script: "echo hi"},
			want:  `{"id":"adhoc-run","request_id":"r1","exec_id":"e1","script":"echo hi"}`,
			absent: []string{"version", "shell", "timeout_secs", "jitter_secs", "deadline_at", "staleness",
				"cwd", "run_as", "retry", "job_id"},
		},
		{
			name:  "Staleness without max_cache_age",
			value: Staleness{Mode: StalenessStrict},
			want:  `{"mode":"strict"}`,
		},
		{
			name:  "minimal ExecResult keeps exit_code 0",
			value: ExecResult{ResultID: "res1", RequestID: "r1", ExecID: "e1", PCID: "PC1"},
			want:  `{"result_id":"res1","request_id":"r1","exec_id":"e1","pc_id":"PC1","exit_code":0}`,
			absent: []string{"job_id", "version", "skipped", "stdout", "stderr", "stdout_object", "stderr_object",
				"started_at", "finished_at", "manifest_id", "attempts"},
		},
		{
			name:   "minimal EventStarted keeps started_at",
			value:  EventStarted{ResultID: "res1", RequestID: "r1", ExecID: "e1", PCID: "PC1", StartedAt: t1},
			want:   `{"result_id":"res1","request_id":"r1","exec_id":"e1","pc_id":"PC1","started_at":"2025-06-01T12:00:01.25Z"}`,
			absent: []string{"job_id"},
		},
		{
			name:  "first-tick Heartbeat keeps agent_cpu_pct null and outbox_depth 0",
			value: Heartbeat{PCID: "PC1", At: t0, AgentVersion: "1.0.0"},
			want:  `{"pc_id":"PC1","at":"2025-06-01T12:00:00Z","agent_version":"1.0.0","agent_cpu_pct":null,"outbox_depth":0,"command_key_fingerprints":[]}`,
			absent: []string{"hostname", "os_family", "arch", "machine_id", "agent_rss_bytes",
				"quarantined_versions", "groups", "command_signing"},
		},
		{
			name:   "Heartbeat with a measured 0% CPU keeps the 0",
			value:  Heartbeat{PCID: "PC1", At: t0, AgentVersion: "1.0.0", AgentCPUPct: ptr(0.0)},
			want:   `{"pc_id":"PC1","at":"2025-06-01T12:00:00Z","agent_version":"1.0.0","agent_cpu_pct":0,"outbox_depth":0,"command_key_fingerprints":[]}`,
			absent: nil,
		},
		{
			name:   "ObsEvent without payload",
			value:  ObsEvent{PCID: "PC1", At: t0, Kind: ObsAgentOnline, Source: "agent", EventRecordID: "boot-1"},
			want:   `{"pc_id":"PC1","at":"2025-06-01T12:00:00Z","kind":"agent_online","source":"agent","event_record_id":"boot-1"}`,
			absent: []string{"payload"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(tt.value)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("marshal:\n got: %s\nwant: %s", got, tt.want)
			}
			var keys map[string]json.RawMessage
			if err := json.Unmarshal(got, &keys); err != nil {
				t.Fatal(err)
			}
			for _, k := range tt.absent {
				if _, ok := keys[k]; ok {
					t.Errorf("empty optional field %q must be omitted, got %s", k, got)
				}
			}
		})
	}
}

func TestHeartbeatNullCPUDecodesToNil(t *testing.T) {
	var hb Heartbeat
	if err := json.Unmarshal([]byte(`{"pc_id":"PC1","agent_cpu_pct":null,"outbox_depth":0}`), &hb); err != nil {
		t.Fatal(err)
	}
	if hb.AgentCPUPct != nil {
		t.Errorf("agent_cpu_pct null must decode to nil (no sample yet), got %v", *hb.AgentCPUPct)
	}
}

func TestDurationUnmarshal(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr []string // substrings the error must contain; nil means success
	}{
		{"seconds string", `"30s"`, 30 * time.Second, nil},
		{"minutes string", `"10m"`, 10 * time.Minute, nil},
		{"hours string", `"24h"`, 24 * time.Hour, nil},
		{"days string", `"7d"`, 7 * 24 * time.Hour, nil},
		{"fractional days", `"1.5d"`, 36 * time.Hour, nil},
		{"compound Go duration", `"1h30m"`, 90 * time.Minute, nil},
		{"zero string", `"0s"`, 0, nil},
		{"integer number is seconds", `30`, 30 * time.Second, nil},
		{"fractional number is seconds", `1.5`, 1500 * time.Millisecond, nil},
		{"zero number", `0`, 0, nil},
		{"null is zero", `null`, 0, nil},
		{"garbage string", `"soon"`, 0, []string{`"soon"`, `"30s"`, `"10m"`, `"24h"`, `"7d"`}},
		{"empty string", `""`, 0, []string{`"30s"`, `"7d"`}},
		{"number without unit in a string", `"30"`, 0, []string{`"30s"`}},
		{"unknown unit", `"3w"`, 0, []string{`"7d"`}},
		{"unit before the day suffix", `"7hd"`, 0, []string{`"7d"`}},
		{"junk before the day suffix", `"1xd"`, 0, []string{`"7d"`}},
		{"infinite days", `"infd"`, 0, []string{`"7d"`}},
		{"exponent days", `"1e3d"`, 0, []string{`"7d"`}},
		{"lone d", `"d"`, 0, []string{`"7d"`}},
		{"negative string", `"-5s"`, 0, []string{"must not be negative"}},
		{"negative days", `"-1d"`, 0, []string{"must not be negative"}},
		{"negative number", `-5`, 0, []string{"must not be negative"}},
		{"days overflowing int64 nanoseconds", `"200000d"`, 0, []string{"too large"}},
		{"seconds overflowing int64 nanoseconds", `1e19`, 0, []string{"too large"}},
		{"boolean", `true`, 0, []string{`"30s"`, "number of seconds"}},
		{"object", `{"s":30}`, 0, []string{`"30s"`, "number of seconds"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Duration(time.Hour) // prove the decode overwrites, null included
			err := json.Unmarshal([]byte(tt.in), &d)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("%s: unexpected error %v", tt.in, err)
				}
				if d.D() != tt.want {
					t.Errorf("%s decoded to %v, want %v", tt.in, d.D(), tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("%s must be rejected, decoded to %v", tt.in, d.D())
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error for %s must explain the format (%q), got: %v", tt.in, s, err)
				}
			}
		})
	}
}

func TestDurationMarshal(t *testing.T) {
	tests := []struct {
		d    Duration
		want string
	}{
		{Duration(30 * time.Second), `"30s"`},
		{Duration(10 * time.Minute), `"10m0s"`},
		{Duration(7 * 24 * time.Hour), `"168h0m0s"`},
		{Duration(1500 * time.Millisecond), `"1.5s"`},
		{0, `"0s"`},
	}
	for _, tt := range tests {
		got, err := json.Marshal(tt.d)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tt.want {
			t.Errorf("Duration(%v) marshals to %s, want %s", tt.d.D(), got, tt.want)
		}
		var back Duration
		if err := json.Unmarshal(got, &back); err != nil || back != tt.d {
			t.Errorf("Duration %s does not round-trip: got %v, %v", got, back.D(), err)
		}
	}
	if s := Duration(90 * time.Second).String(); s != "1m30s" {
		t.Errorf("String() = %q, want the Go duration format 1m30s", s)
	}
	if !Duration(0).IsZero() || Duration(1).IsZero() {
		t.Error("IsZero must be true for 0 only")
	}
}

func TestParseDuration(t *testing.T) {
	good := map[string]time.Duration{
		"30s": 30 * time.Second, "10m": 10 * time.Minute, "24h": 24 * time.Hour,
		"7d": 7 * 24 * time.Hour, "0d": 0, ".5d": 12 * time.Hour, "2.d": 48 * time.Hour, "+1d": 24 * time.Hour,
		"1ms": time.Millisecond,
	}
	for in, want := range good {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "1..5d", "1.2.3d", "nand", "1_0d", "--1d", "7 d", "5"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) must fail", in)
		} else if !strings.Contains(err.Error(), "expected a number with a unit") {
			t.Errorf("ParseDuration(%q) error must name the expected format, got: %v", in, err)
		}
	}
}

func TestSubjectBuilders(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"commands for every agent", SubjectCommandsAll, "commands.all"},
		{"commands for one PC", SubjectCommandsPC("PC1"), "commands.pc.PC1"},
		{"commands for one PC keeps case and unicode", SubjectCommandsPC("PC-東京"), "commands.pc.PC-東京"},
		{"commands for a group", SubjectCommandsGroup("accounting"), "commands.group.accounting"},
		{"results", SubjectResults("req-1", "PC1"), "results.req-1.PC1"},
		{"results of one request", SubjectResultsOfRequest("req-1"), "results.req-1.*"},
		{"results of older agents", SubjectResultsLegacy("req-1"), "results.req-1"},
		{"started events", SubjectEventsStarted("exec-1", "PC1"), "events.started.exec-1.PC1"},
		{"heartbeat", SubjectHeartbeat("PC1"), "heartbeat.PC1"},
		{"ping", SubjectPing("PC1"), "agents.PC1.ping"},
		{"kill", SubjectKill("exec-1"), "kill.exec-1"},
		{"every kill", SubjectKillWild, "kill.*"},
		{"agent config", SubjectAgentConfig("PC1"), "agents.PC1.config"},
		{"inventory section", SubjectInventory("PC1", "hw"), "inventory.PC1.hw"},
		{"host perf", SubjectHostPerf("PC1"), "host_perf.PC1"},
		{"obs events", SubjectObs("PC1"), "obs.PC1"},
		{"log fetch", SubjectLogsFetch("PC1"), "logs.fetch.PC1"},
		{"audit with target", SubjectAudit("alice", "exec", "PC1"), "audit.alice.exec.PC1"},
		{"audit without target", SubjectAudit("alice", "login", ""), "audit.alice.login"},
		{"EXEC stream subjects", SubjectCommandsWild, "commands.>"},
		{"RESULTS stream subjects", SubjectResultsWild, "results.>"},
		{"EVENTS stream subjects", SubjectEventsWild, "events.>"},
		{"OBS_EVENTS stream subjects", SubjectObsWild, "obs.>"},
		{"INVENTORY stream subjects", SubjectInventoryWild, "inventory.>"},
		{"AUDIT stream subjects", SubjectAuditWild, "audit.>"},
		{"all heartbeats", SubjectHeartbeatWild, "heartbeat.>"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: subject %q, want %q (DESIGN.md §2)", tt.name, tt.got, tt.want)
		}
	}
	// The survey subject must never collide with agents.<pc>.ping or
	// agents.<pc>.config, whatever the pc_id.
	if n := strings.Count(SubjectSurvey, "."); n == strings.Count(SubjectPing("x"), ".") {
		t.Errorf("SubjectSurvey %q has as many tokens as agents.<pc>.ping", SubjectSurvey)
	}
}

func TestResourceNames(t *testing.T) {
	tests := []struct{ got, want string }{
		{StreamExec, "EXEC"}, {StreamResults, "RESULTS"}, {StreamEvents, "EVENTS"},
		{StreamObs, "OBS_EVENTS"}, {StreamInventory, "INVENTORY"}, {StreamAudit, "AUDIT"},
		{BucketAgentConfig, "agent_config"}, {BucketAgentGroups, "agent_groups"},
		{BucketScriptCurrent, "script_current"}, {BucketScriptStatus, "script_status"},
		{BucketJobs, "jobs"}, {BucketSchedules, "schedules"}, {BucketFleetConfig, "fleet_config"},
		{ObjectAgentReleases, "agent_releases"}, {ObjectResultOutput, "result_output"}, {ObjectScripts, "scripts"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("JetStream resource name %q, want %q (DESIGN.md §2)", tt.got, tt.want)
		}
		if strings.Contains(tt.got, ".") {
			t.Errorf("JetStream resource name %q must not contain a dot", tt.got)
		}
	}
	if OutputInlineLimit != 256*1024 {
		t.Errorf("OutputInlineLimit = %d, want 256 KiB", OutputInlineLimit)
	}
}

func TestValidToken(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"plain hostname", "PC1", true},
		{"hostname with dash and underscore", "WS-0042_b", true},
		{"unicode hostname", "PC-東京", true},
		{"accented group", "comptabilité", true},
		{"uuid-like id", "01HZY8K3-7c1e-4f0b-9a2d-1b2c3d4e5f60", true},
		{"exactly 256 bytes", strings.Repeat("a", 256), true},
		{"empty", "", false},
		{"257 bytes", strings.Repeat("a", 257), false},
		{"unicode over 256 bytes", strings.Repeat("東", 86), false}, // 258 bytes
		{"dot splits the token", "pc1.corp", false},
		{"leading dot", ".pc", false},
		{"star wildcard", "pc*", false},
		{"lone star", "*", false},
		{"full wildcard", ">", false},
		{"space", "my pc", false},
		{"tab", "my\tpc", false},
		{"newline", "pc\n", false},
		{"carriage return", "pc\r", false},
		{"NUL", "pc\x00", false},
		{"DEL", "pc\x7f", false},
		{"C1 control", "pc\u0085", false},
		{"no-break space", "my\u00a0pc", false},
		{"ideographic space", "東京\u3000PC", false},
		{"invalid UTF-8", "pc\xff", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidToken(tt.in); got != tt.want {
				t.Errorf("ValidToken(%q) = %v, want %v", tt.in, got, tt.want)
			}
			err := CheckToken("pc", tt.in)
			if tt.want {
				if err != nil {
					t.Errorf("CheckToken(%q) = %v, want nil for a valid token", tt.in, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckToken(%q) must reject it", tt.in)
			}
			if !strings.HasPrefix(err.Error(), "pc ") {
				t.Errorf("CheckToken error must name what was checked, got: %v", err)
			}
			wantPart := "not usable in a NATS subject"
			if tt.in == "" {
				wantPart = "is empty"
			}
			if !strings.Contains(err.Error(), wantPart) {
				t.Errorf("CheckToken(%q) error must say %q, got: %v", tt.in, wantPart, err)
			}
		})
	}
}

func TestPCFromSubject(t *testing.T) {
	tests := []struct {
		subject, prefix string
		want            string
		ok              bool
	}{
		{"heartbeat.PC1", "heartbeat", "PC1", true},
		{"heartbeat.PC-東京", "heartbeat", "PC-東京", true},
		{"agents.PC1.ping", "agents", "PC1", true},
		{"inventory.PC1.hw", "inventory", "PC1", true},
		{"host_perf.PC1", "host_perf", "PC1", true},
		{"heartbeat.", "heartbeat", "", false},
		{"heartbeat..x", "heartbeat", "", false},
		{"heartbeat", "heartbeat", "", false},
		{"heartbeats.PC1", "heartbeat", "", false},
		{"obs.PC1", "heartbeat", "", false},
		{"", "heartbeat", "", false},
	}
	for _, tt := range tests {
		got, ok := PCFromSubject(tt.subject, tt.prefix)
		if got != tt.want || ok != tt.ok {
			t.Errorf("PCFromSubject(%q, %q) = %q, %v; want %q, %v", tt.subject, tt.prefix, got, ok, tt.want, tt.ok)
		}
	}
	// Builders and the parser agree.
	for _, pc := range []string{"PC1", "PC-東京"} {
		for _, c := range []struct{ subject, prefix string }{
			{SubjectHeartbeat(pc), "heartbeat"}, {SubjectPing(pc), "agents"}, {SubjectObs(pc), "obs"},
			{SubjectInventory(pc, "sw"), "inventory"}, {SubjectAgentConfig(pc), "agents"},
		} {
			if got, ok := PCFromSubject(c.subject, c.prefix); !ok || got != pc {
				t.Errorf("PCFromSubject(%q) = %q, %v; want the pc %q the builder embedded", c.subject, got, ok, pc)
			}
		}
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct{ got, want int }{
		{ExitKilled, -1}, {ExitRefusedSignature, 123}, {ExitVersionPin, 124},
		{ExitDeadlinePassed, 125}, {ExitRevoked, 126}, {ExitStale, 127},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("synthetic exit code %d, want %d (DESIGN.md §2)", tt.got, tt.want)
		}
	}
	ext := []int{ExitInvalidCommand, ExitSpawnFailed, ExitOutcomeUnknown}
	for _, c := range ext {
		if slices.Contains([]int{-1, 0, 123, 124, 125, 126, 127}, c) {
			t.Errorf("extension exit code %d collides with a reference code", c)
		}
	}
}

func TestPCFromResultSubject(t *testing.T) {
	tests := []struct {
		subject string
		want    string
		ok      bool
	}{
		{SubjectResults("req-1", "PC1"), "PC1", true},
		{SubjectResults("req-1", "PC-東京"), "PC-東京", true},
		{SubjectResultsLegacy("req-1"), "", false},
		{"results.req-1.", "", false},
		{"results.req-1.pc.extra", "", false},
		{"heartbeat.PC1.x", "", false},
		{"results", "", false},
	}
	for _, tt := range tests {
		got, ok := PCFromResultSubject(tt.subject)
		if got != tt.want || ok != tt.ok {
			t.Errorf("PCFromResultSubject(%q) = %q, %v; want %q, %v", tt.subject, got, ok, tt.want, tt.ok)
		}
	}
}
