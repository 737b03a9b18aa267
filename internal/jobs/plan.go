package jobs

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/jobs/strictyaml"
	"github.com/kanade-project/kanade/internal/wire"
)

// MaxRolloutSpan caps the time between the first and the last wave: EXEC
// keeps commands 7 days, and a plan is kept 30 days.
const MaxRolloutSpan = 7 * 24 * time.Hour

// MaxTargetEntries caps groups + pcs of one target: the plan is stored in
// one KV value (at most 1 MiB with the script). Larger fan-outs are split
// by the caller (the scheduler fires per_pc schedules in batches).
const MaxTargetEntries = 5000

// Target selects PCs: everyone, or a union of groups and PCs.
type Target struct {
	All    bool     `yaml:"all,omitempty" json:"all,omitempty"`
	Groups []string `yaml:"groups,omitempty" json:"groups,omitempty"`
	PCs    []string `yaml:"pcs,omitempty" json:"pcs,omitempty"`
}

// IsZero reports whether t selects nothing.
func (t Target) IsZero() bool { return !t.All && len(t.Groups) == 0 && len(t.PCs) == 0 }

// Publishes lists the subjects a command for t goes to: commands.all, or
// one commands.group.<g> per group and one commands.pc.<pc> per PC.
func (t Target) Publishes() []fleetclient.Target {
	if t.All {
		return []fleetclient.Target{{All: true}}
	}
	var out []fleetclient.Target
	for _, g := range t.Groups {
		out = append(out, fleetclient.Target{Group: g})
	}
	for _, pc := range t.PCs {
		out = append(out, fleetclient.Target{PC: pc})
	}
	return out
}

// TargetSchema is the strict schema of a Target (shared with schedules).
func TargetSchema() []strictyaml.Field {
	return []strictyaml.Field{
		{Name: "all", Kind: strictyaml.Bool},
		{Name: "groups", Kind: strictyaml.StringList},
		{Name: "pcs", Kind: strictyaml.StringList},
	}
}

// ValidateTarget reports the problems of t at path into r.
func ValidateTarget(r *strictyaml.Report, path string, t Target) {
	if t.IsZero() {
		r.Add(path, "select PCs: all: true, groups: [...] or pcs: [...]")
		return
	}
	if t.All && (len(t.Groups) > 0 || len(t.PCs) > 0) {
		r.Add(path, "all: true already selects every PC; remove groups and pcs")
	}
	checkList := func(key, what string, xs []string) {
		seen := map[string]int{}
		for i, x := range xs {
			p := fmt.Sprintf("%s[%d]", strictyaml.Join(path, key), i)
			if err := wire.CheckToken(what, x); err != nil {
				r.Add(p, "%s", err.Error())
				continue
			}
			if j, dup := seen[x]; dup {
				r.Add(p, "%s %q is already listed at %s[%d]", what, x, key, j)
				continue
			}
			seen[x] = i
		}
	}
	if n := len(t.Groups) + len(t.PCs); n > MaxTargetEntries {
		r.Add(path, "names %d groups and PCs; at most %d (use a group, or all)", n, MaxTargetEntries)
		return
	}
	checkList("groups", "group", t.Groups)
	checkList("pcs", "pc", t.PCs)
}

// Wave is one step of a rollout: the group it is published to, and how
// long after the previous wave.
type Wave struct {
	Group string   `yaml:"group" json:"group"`
	Delay Duration `yaml:"delay,omitempty" json:"delay,omitempty"`
}

// Rollout publishes a job group by group.
type Rollout struct {
	Waves []Wave `yaml:"waves" json:"waves"`
	// StopIfFailedPct: a wave is not published when more than this
	// percentage of the results received so far for the execution failed
	// (exit code ≠ 0, as counted by the ResultCounter). 0, the default,
	// stops on any failure; 100 never stops. With no results yet, the
	// rate is 0 %.
	StopIfFailedPct float64 `yaml:"stop_if_failed_pct" json:"stop_if_failed_pct"`
}

// Plan says who runs a job and when.
//
// Without a rollout, Target is published at once. With rollout.waves,
// Target must be empty: the waves' groups are the target; the first wave is
// published at once, each later one Delay after the previous one.
type Plan struct {
	// ExecID, when set, makes Start idempotent: a second Start with the
	// same ExecID fails with ErrExecExists and publishes nothing. Empty:
	// a fresh id is minted.
	ExecID string `yaml:"exec_id,omitempty" json:"exec_id,omitempty"`
	Target Target `yaml:"target,omitempty" json:"target,omitzero"`
	// Jitter is the random delay each agent waits before starting (jitter_secs).
	Jitter Duration `yaml:"jitter,omitempty" json:"jitter,omitempty"`
	// Deadline: agents that have not started the command this long after
	// it was published skip it with exit 125 (deadline_at = publish time +
	// Deadline, per wave).
	Deadline Duration `yaml:"deadline,omitempty" json:"deadline,omitempty"`
	// DeadlineAt is an absolute deadline_at for every wave (the scheduler
	// uses it for starting_deadline). Exclusive with Deadline.
	DeadlineAt time.Time `yaml:"deadline_at,omitempty" json:"deadline_at,omitzero"`
	Rollout    *Rollout  `yaml:"rollout,omitempty" json:"rollout,omitempty"`
}

func planSchema() []strictyaml.Field {
	return []strictyaml.Field{
		{Name: "exec_id", Kind: strictyaml.String},
		{Name: "target", Kind: strictyaml.Map, Fields: TargetSchema()},
		{Name: "jitter", Kind: strictyaml.Duration},
		{Name: "deadline", Kind: strictyaml.Duration},
		{Name: "deadline_at", Kind: strictyaml.Time},
		{Name: "rollout", Kind: strictyaml.Map, Fields: []strictyaml.Field{
			{Name: "waves", Kind: strictyaml.List, Required: true, Elem: &strictyaml.Field{Kind: strictyaml.Map, Fields: []strictyaml.Field{
				{Name: "group", Kind: strictyaml.String, Required: true},
				{Name: "delay", Kind: strictyaml.Duration},
			}}},
			{Name: "stop_if_failed_pct", Kind: strictyaml.Number},
		}},
	}
}

// ParsePlan reads a plan (YAML or JSON) strictly: unknown keys and bad
// values are reported with their path in a *ValidationError.
func ParsePlan(data []byte) (Plan, error) {
	const what = "plan"
	root, err := strictyaml.Parse(what, data)
	if err != nil {
		return Plan{}, err
	}
	r := strictyaml.NewReport(what)
	strictyaml.Check(r, root, planSchema())
	if err := r.Err(); err != nil {
		return Plan{}, err
	}
	var p Plan
	if err := root.Decode(&p); err != nil {
		r.Add("", "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		return Plan{}, r.Err()
	}
	p.validate(r)
	if err := r.Err(); err != nil {
		return Plan{}, err
	}
	return p, nil
}

// Validate checks a plan built in code (ParsePlan already did).
func (p Plan) Validate() error {
	r := strictyaml.NewReport("plan")
	p.validate(r)
	return r.Err()
}

func (p Plan) validate(r *strictyaml.Report) {
	if p.ExecID != "" {
		if err := CheckID("exec_id", p.ExecID); err != nil {
			r.Add("exec_id", "%s", err.Error())
		}
	}
	waves := p.Rollout != nil && len(p.Rollout.Waves) > 0
	switch {
	case waves && !p.Target.IsZero():
		r.Add("target", "leave target empty when rollout.waves is set: the waves' groups are the target")
	case !waves:
		ValidateTarget(r, "target", p.Target)
	}
	if p.Jitter < 0 {
		r.Add("jitter", "must not be negative")
	} else if p.Jitter%Duration(time.Second) != 0 {
		r.Add("jitter", "must be a whole number of seconds, got %s", p.Jitter)
	}
	if p.Deadline < 0 {
		r.Add("deadline", "must not be negative")
	}
	if p.Deadline > 0 && !p.DeadlineAt.IsZero() {
		r.Add("deadline", "set deadline or deadline_at, not both")
	}
	if p.Deadline > 0 && p.Deadline <= p.Jitter {
		r.Add("deadline", "must be longer than jitter (%s): agents wait up to the jitter before starting", p.Jitter)
	}
	if ro := p.Rollout; ro != nil {
		if len(ro.Waves) == 0 {
			r.Add("rollout.waves", "list at least one wave, or remove rollout")
		}
		if ro.StopIfFailedPct < 0 || ro.StopIfFailedPct > 100 {
			r.Add("rollout.stop_if_failed_pct", "must be between 0 and 100, got %g", ro.StopIfFailedPct)
		}
		seen := map[string]int{}
		var span time.Duration
		for i, w := range ro.Waves {
			path := fmt.Sprintf("rollout.waves[%d]", i)
			if err := wire.CheckToken("group", w.Group); err != nil {
				r.Add(path+".group", "%s", err.Error())
			} else if j, dup := seen[w.Group]; dup {
				r.Add(path+".group", "group %q is already wave %d", w.Group, j)
			} else {
				seen[w.Group] = i
			}
			if w.Delay < 0 {
				r.Add(path+".delay", "must not be negative")
			}
			if i == 0 && w.Delay != 0 {
				r.Add(path+".delay", "the first wave is published at once; its delay must be 0s (got %s)", w.Delay)
			}
			// Saturating: delays near the int64 limit would wrap the
			// sum negative, and a negative span passes the check below.
			if d := w.Delay.D(); d > 0 {
				span += min(d, math.MaxInt64-span)
			}
		}
		if span > MaxRolloutSpan {
			r.Add("rollout.waves", "the waves span %s; at most %s", Duration(span), Duration(MaxRolloutSpan))
		}
	}
}

// waveTargets returns the publishes of each wave of p.
func (p Plan) waveTargets() [][]fleetclient.Target {
	if p.Rollout == nil || len(p.Rollout.Waves) == 0 {
		return [][]fleetclient.Target{p.Target.Publishes()}
	}
	out := make([][]fleetclient.Target, len(p.Rollout.Waves))
	for i, w := range p.Rollout.Waves {
		out[i] = []fleetclient.Target{{Group: w.Group}}
	}
	return out
}
