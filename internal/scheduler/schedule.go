// Package scheduler fires catalog jobs on schedules stored in KV
// "schedules" (YAML, key = schedule id):
//
//	id: nightly-cleanup
//	job: disk-cleanup
//	enabled: true                 # default true
//	cron: "0 3 * * *"             # 5 fields or a descriptor (@daily, @hourly, @every 6h)
//	timezone: Europe/Paris        # default UTC
//	target: {groups: [office]}
//	jitter: 10m
//	starting_deadline: 1h         # → deadline_at; also how late a missed slot may still fire
//
// or, instead of cron, a reconcile form: `per_pc: once` (every PC of the
// target runs the job once) or `per_pc: {every: 6h}` (at least every 6 h).
//
// Writes are strict (unknown keys rejected with their path), reads lenient.
// One Scheduler is active at a time across server replicas (a lease in KV
// bucket scheduler_lease); it hot-reloads schedules by watching the bucket,
// persists what it fired in KV bucket schedule_state so a restart neither
// repeats nor loses a fire, and honours the fleet freeze (fleet_config key
// "freeze"), which stops scheduled fires only.
package scheduler

import (
	"cmp"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // time zones on servers without a zoneinfo database (Windows)

	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"

	"github.com/kanade-project/kanade/internal/jobs"
	"github.com/kanade-project/kanade/internal/jobs/strictyaml"
)

// MinEvery is the shortest per_pc interval.
const MinEvery = time.Minute

// Schedule is one stored schedule.
type Schedule struct {
	ID          string `yaml:"id" json:"id"`
	Job         string `yaml:"job" json:"job"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Enabled defaults to true when the key is absent.
	Enabled  bool   `yaml:"enabled" json:"enabled"`
	Cron     string `yaml:"cron,omitempty" json:"cron,omitempty"`
	Timezone string `yaml:"timezone,omitempty" json:"timezone,omitempty"`
	// PerPC is the reconcile form, exclusive with Cron.
	PerPC            *PerPC        `yaml:"per_pc,omitempty" json:"per_pc,omitempty"`
	Target           jobs.Target   `yaml:"target" json:"target"`
	Jitter           jobs.Duration `yaml:"jitter,omitempty" json:"jitter,omitempty"`
	StartingDeadline jobs.Duration `yaml:"starting_deadline,omitempty" json:"starting_deadline,omitempty"`
}

// PerPC is `once` or `{every: <duration>}`.
type PerPC struct {
	Once  bool
	Every jobs.Duration
}

// MarshalYAML writes "once" or {every: …}.
func (p PerPC) MarshalYAML() (any, error) {
	if p.Once {
		return "once", nil
	}
	return map[string]string{"every": p.Every.String()}, nil
}

// UnmarshalYAML reads "once" or {every: …}.
func (p *PerPC) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Value != "once" {
			return fmt.Errorf("per_pc must be once or {every: <duration>}, got %q", n.Value)
		}
		*p = PerPC{Once: true}
		return nil
	case yaml.MappingNode:
		var m struct {
			Every jobs.Duration `yaml:"every"`
		}
		if err := n.Decode(&m); err != nil {
			return err
		}
		*p = PerPC{Every: m.Every}
		return nil
	}
	return fmt.Errorf("per_pc must be once or {every: <duration>}")
}

// MarshalJSON writes "once" or {"every": …}.
func (p PerPC) MarshalJSON() ([]byte, error) {
	v, _ := p.MarshalYAML()
	return json.Marshal(v)
}

// UnmarshalJSON reads "once" or {"every": …}.
func (p *PerPC) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		if s != "once" {
			return fmt.Errorf("per_pc must be once or {every: <duration>}, got %q", s)
		}
		*p = PerPC{Once: true}
		return nil
	}
	var m struct {
		Every jobs.Duration `json:"every"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*p = PerPC{Every: m.Every}
	return nil
}

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

func perPCCheck(r *strictyaml.Report, path string, n *yaml.Node) {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Value != "once" {
			r.Add(path, "expected once or {every: <duration>}, got %q", n.Value)
		}
	case yaml.MappingNode:
		r.WalkMap(path, n, []strictyaml.Field{{Name: "every", Kind: strictyaml.Duration, Required: true}})
	default:
		r.Add(path, "expected once or {every: <duration>}")
	}
}

func scheduleSchema() []strictyaml.Field {
	return []strictyaml.Field{
		{Name: "id", Kind: strictyaml.String, Required: true},
		{Name: "job", Kind: strictyaml.String, Required: true},
		{Name: "description", Kind: strictyaml.String},
		{Name: "enabled", Kind: strictyaml.Bool},
		{Name: "cron", Kind: strictyaml.String},
		{Name: "timezone", Kind: strictyaml.String},
		{Name: "per_pc", Kind: strictyaml.Custom, Check: perPCCheck},
		{Name: "target", Kind: strictyaml.Map, Required: true, Fields: jobs.TargetSchema()},
		{Name: "jitter", Kind: strictyaml.Duration},
		{Name: "starting_deadline", Kind: strictyaml.Duration},
	}
}

// ParseStrict reads a schedule being written: unknown keys, bad cron
// expressions, time zones and durations are reported with their path and
// line in a *jobs.ValidationError.
func ParseStrict(data []byte) (Schedule, error) {
	const what = "schedule"
	root, err := strictyaml.Parse(what, data)
	if err != nil {
		return Schedule{}, err
	}
	r := strictyaml.NewReport(what)
	strictyaml.Check(r, root, scheduleSchema())
	if err := r.Err(); err != nil {
		return Schedule{}, err
	}
	s := Schedule{Enabled: true}
	if err := root.Decode(&s); err != nil {
		r.Add("", "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		return Schedule{}, r.Err()
	}
	s.validate(r)
	if err := r.Err(); err != nil {
		return Schedule{}, err
	}
	return s, nil
}

// ParseLenient reads a stored schedule: unknown keys are ignored. The
// result is not validated (see Validate).
func ParseLenient(data []byte) (Schedule, error) {
	s := Schedule{Enabled: true}
	if err := yaml.Unmarshal(data, &s); err != nil {
		return Schedule{}, fmt.Errorf("reading schedule: %w", err)
	}
	if s.ID == "" {
		return Schedule{}, fmt.Errorf("reading schedule: no id")
	}
	return s, nil
}

// Validate checks a schedule built in code or read leniently.
func (s Schedule) Validate() error {
	r := strictyaml.NewReport("schedule")
	s.validate(r)
	return r.Err()
}

func (s Schedule) validate(r *strictyaml.Report) {
	if err := jobs.CheckID("schedule id", s.ID); err != nil {
		r.Add("id", "%s", err.Error())
	}
	if err := jobs.CheckID("job id", s.Job); err != nil {
		r.Add("job", "%s", err.Error())
	}
	switch {
	case s.Cron != "" && s.PerPC != nil:
		r.Add("cron", "set either cron or per_pc, not both")
	case s.Cron == "" && s.PerPC == nil:
		r.Add("cron", "cron or per_pc is required")
	case s.Cron != "":
		if _, err := s.spec(); err != nil {
			r.Add("cron", "%s", err.Error())
		}
	}
	if s.Timezone != "" {
		if s.Cron == "" {
			r.Add("timezone", "only applies to cron schedules")
		} else if _, err := s.location(); err != nil {
			r.Add("timezone", "%s", err.Error())
		}
	}
	if p := s.PerPC; p != nil && !p.Once && p.Every < jobs.Duration(MinEvery) {
		r.Add("per_pc.every", "must be at least %s, got %s", jobs.Duration(MinEvery), p.Every)
	}
	jobs.ValidateTarget(r, "target", s.Target)
	if s.Jitter < 0 {
		r.Add("jitter", "must not be negative")
	} else if s.Jitter%jobs.Duration(time.Second) != 0 {
		r.Add("jitter", "must be a whole number of seconds, got %s", s.Jitter)
	}
	if s.StartingDeadline < 0 {
		r.Add("starting_deadline", "must not be negative")
	} else if s.StartingDeadline > 0 && s.StartingDeadline <= s.Jitter {
		r.Add("starting_deadline", "must be longer than jitter (%s): agents wait up to the jitter before starting", s.Jitter)
	}
}

func (s Schedule) location() (*time.Location, error) {
	tz := cmp.Or(s.Timezone, "UTC")
	if tz == "Local" {
		return nil, fmt.Errorf("name an IANA time zone like Europe/Paris; Local depends on the server")
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q (expected an IANA name like Europe/Paris or Asia/Tokyo)", tz)
	}
	return loc, nil
}

// spec parses the cron expression.
func (s Schedule) spec() (cron.Schedule, error) {
	expr := strings.TrimSpace(s.Cron)
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, fmt.Errorf("put the time zone in the timezone key, not in the expression")
	}
	sched, err := cronParser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("invalid cron expression %q: %v (expected 5 fields \"minute hour day-of-month month day-of-week\", like \"0 3 * * *\", or @hourly, @daily, @weekly, @monthly, @every 6h)", s.Cron, err)
	}
	if sched.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return nil, fmt.Errorf("cron expression %q never fires", s.Cron)
	}
	return sched, nil
}

// Next returns the first cron slot strictly after t, in UTC (zero for a
// per_pc schedule or an invalid expression).
func (s Schedule) Next(t time.Time) time.Time {
	sched, err := s.spec()
	if err != nil {
		return time.Time{}
	}
	loc, err := s.location()
	if err != nil {
		return time.Time{}
	}
	n := sched.Next(t.In(loc))
	if n.IsZero() {
		return n
	}
	return n.UTC()
}

// YAML returns the canonical stored form.
func (s Schedule) YAML() ([]byte, error) { return strictyaml.Marshal(s) }

// cronKey identifies the cron expression and zone of an enabled schedule;
// when it changes (or the schedule is re-enabled), missed slots are not
// caught up.
func (s Schedule) cronKey() string {
	return fmt.Sprintf("%s|%s|%v", s.Cron, cmp.Or(s.Timezone, "UTC"), s.Enabled)
}
