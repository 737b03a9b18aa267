// Package rollout is the shared logic of agent-version rollouts: which
// releases agents could take, which layers of agent_config set a
// target_version, and setting or clearing that target in one layer. The
// CLI (`kanade agent rollout|current|releases`) and the HTTP API both call
// it, so they refuse, write and report exactly the same things.
//
// Guarantees:
//   - CheckVersion refuses a version with no release any agent could take;
//     both callers run it before writing, so no such target is written;
//   - a rollout write (Update with Apply or Clear) touches only
//     target_version and target_version_jitter: every other field of the
//     layer, unknown ones and nulls included, keeps its value;
//   - every write is compare-and-set against the revision read (or the
//     revision the caller names), so a concurrent change is never
//     overwritten: it fails with a *kvcas.ConflictError and writes nothing;
//   - an unchanged target is not written again (no new revision).
package rollout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/fleetconfig"
	"github.com/kanade-project/kanade/internal/kvcas"
	"github.com/kanade-project/kanade/internal/release"
	"github.com/kanade-project/kanade/internal/wire"
)

// The two agent_config fields a rollout sets.
const (
	FieldTarget = "target_version"
	FieldJitter = "target_version_jitter"
)

// Release is one object of agent_releases as listed.
type Release struct {
	Object      string    `json:"object"`
	Version     string    `json:"version"`
	OS          string    `json:"os"`
	Arch        string    `json:"arch"`
	Size        uint64    `json:"size"`
	SHA256      string    `json:"sha256,omitempty"`
	KeyID       string    `json:"key_id,omitempty"`
	Signed      bool      `json:"signed"`
	PublishedAt time.Time `json:"published_at,omitzero"`
	// Problem is why agents cannot take this object (empty: they can,
	// subject to their release keys).
	Problem string `json:"problem,omitempty"`
}

// Platform is "<os>-<arch>".
func (r Release) Platform() string { return r.OS + "-" + r.Arch }

// ListReleases reads every object of agent_releases and checks its record
// the way an agent does (name, size, digest format, signature presence),
// sorted by object name (version, then platform). Signatures are not
// verified here: that takes the endpoints' own release keys.
func ListReleases(ctx context.Context, js jetstream.JetStream) ([]Release, error) {
	obs, err := js.ObjectStore(ctx, wire.ObjectAgentReleases)
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w (run `kanade jetstream setup`)", wire.ObjectAgentReleases, err)
	}
	infos, err := obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", wire.ObjectAgentReleases, err)
	}
	var rows []Release
	for _, info := range infos {
		row := Release{Object: info.Name, Size: info.Size}
		var ok bool
		if row.Version, row.OS, row.Arch, ok = release.ParseObjectName(info.Name); !ok {
			row.Problem = "object name is not <version>/<os>-<arch>"
			rows = append(rows, row)
			continue
		}
		rec, raw, sig, err := release.FromMetadata(info.Metadata)
		if err == nil {
			err = release.Check(info.Name, info.Size, rec, raw, sig, nil)
		}
		if err == nil {
			switch {
			case len(sig) > 0 && rec.KeyID == "":
				err = errors.New("signature without a key id")
			case len(sig) == 0 && rec.KeyID != "":
				err = fmt.Errorf("key id %s but no signature", rec.KeyID)
			}
		}
		row.SHA256, row.KeyID, row.Signed, row.PublishedAt = rec.SHA256, rec.KeyID, len(sig) > 0, rec.PublishedAt
		if err != nil {
			row.Problem = err.Error()
		}
		rows = append(rows, row)
	}
	// obs.List is in stream order; show version then platform.
	slices.SortFunc(rows, func(x, y Release) int { return strings.Compare(x.Object, y.Object) })
	return rows, nil
}

// UnknownReleaseError: the version has no release any agent could take,
// so a target naming it would only make agents retry forever.
type UnknownReleaseError struct {
	Version string
	msg     string
}

func (e *UnknownReleaseError) Error() string { return e.msg }

// CheckVersion refuses (*UnknownReleaseError) a version without any usable
// release in rows, and otherwise returns warnings: the platforms published
// for other versions that lack it (their PCs would not update) and the
// unsigned releases of it (endpoints that trust a key refuse them).
func CheckVersion(version string, rows []Release) ([]string, error) {
	have := map[string]Release{}
	bad := map[string]string{}
	others := map[string][]string{} // other version → platforms
	all := map[string]bool{}
	for _, r := range rows {
		if r.Version == "" {
			continue
		}
		if r.Problem == "" || r.Version == version {
			all[r.Platform()] = true
		}
		switch {
		case r.Version != version:
			if r.Problem == "" {
				others[r.Version] = append(others[r.Version], r.Platform())
			}
		case r.Problem != "":
			bad[r.Platform()] = r.Problem
		default:
			have[r.Platform()] = r
		}
	}
	if len(have) == 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "version %s has no usable release in %s, so no agent could update to it; nothing written", version, wire.ObjectAgentReleases)
		for _, p := range slices.Sorted(maps.Keys(bad)) {
			fmt.Fprintf(&b, "\n  %s/%s: invalid record: %s", version, p, bad[p])
		}
		if len(others) == 0 {
			b.WriteString("\nno release is published at all: kanade agent publish <binary> first")
		} else {
			b.WriteString("\npublished versions:")
			for _, v := range slices.Sorted(maps.Keys(others)) {
				fmt.Fprintf(&b, "\n  %s (%s)", v, strings.Join(others[v], ", "))
			}
			fmt.Fprintf(&b, "\npublish %s for these platforms with kanade agent publish <binary> --version %s", version, version)
		}
		return nil, &UnknownReleaseError{Version: version, msg: b.String()}
	}
	var warnings []string
	for _, p := range slices.Sorted(maps.Keys(all)) {
		if _, ok := have[p]; ok {
			continue
		}
		if msg, ok := bad[p]; ok {
			warnings = append(warnings, fmt.Sprintf("%s has no usable %s release (invalid record: %s): PCs on %s refuse it (agent_update_refused) and stay on their version until the target changes", version, p, msg, p))
			continue
		}
		warnings = append(warnings, fmt.Sprintf("%s has no usable %s release (not published): PCs on %s stay on their version and keep retrying until it is published", version, p, p))
	}
	for _, p := range slices.Sorted(maps.Keys(have)) {
		if !have[p].Signed {
			warnings = append(warnings, fmt.Sprintf("%s for %s is UNSIGNED: endpoints that trust a release key will refuse it", version, p))
		}
	}
	return warnings, nil
}

// InputError is a rollout input that can never be stored (a malformed
// version or jitter); Field is FieldTarget or FieldJitter.
type InputError struct {
	Field string
	Err   error
}

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// Fields validates a rollout's inputs and returns the values to store:
// target_version, and target_version_jitter when jitter is not nil. It
// does not look at the releases: CheckVersion does.
func Fields(version string, jitter *string) (map[string]json.RawMessage, error) {
	if err := release.CheckVersion(version); err != nil {
		return nil, &InputError{FieldTarget, err}
	}
	set := map[string]json.RawMessage{}
	var err error
	if set[FieldTarget], err = fleetconfig.Validate(FieldTarget, version); err != nil {
		return nil, &InputError{FieldTarget, err}
	}
	if jitter != nil {
		if set[FieldJitter], err = fleetconfig.Validate(FieldJitter, *jitter); err != nil {
			return nil, &InputError{FieldJitter, err}
		}
	}
	return set, nil
}

// Change is what an edit did to one field. Old is nil when the field was
// not set; New is nil when the edit removed it. Changed is false for a
// field given with the value it already had.
type Change struct {
	Field   string          `json:"field"`
	Old     json.RawMessage `json:"old"`
	New     json.RawMessage `json:"new"`
	Changed bool            `json:"changed"`
}

// Apply sets the fields of set (from Fields) in layer, in a fixed order
// (target_version, then the jitter), and reports each.
func Apply(layer, set map[string]json.RawMessage) []Change {
	var out []Change
	for _, f := range []string{FieldTarget, FieldJitter} {
		raw, ok := set[f]
		if !ok {
			continue
		}
		old, had := layer[f]
		c := Change{Field: f, New: raw}
		if had {
			c.Old = old
		}
		if !had || !fleetconfig.SameValue(old, raw) {
			layer[f] = raw
			c.Changed = true
		}
		out = append(out, c)
	}
	return out
}

// Clear removes target_version and target_version_jitter from layer and
// reports the fields it removed (none: the layer set neither).
func Clear(layer map[string]json.RawMessage) []Change {
	var out []Change
	for _, f := range []string{FieldTarget, FieldJitter} {
		if old, had := layer[f]; had {
			delete(layer, f)
			out = append(out, Change{Field: f, Old: old, Changed: true})
		}
	}
	return out
}

// LayerError: the stored layer is not a JSON object; agents ignore it and
// it cannot be edited field by field.
type LayerError struct {
	Read kvcas.Value
	Err  error
}

func (e *LayerError) Error() string {
	return fmt.Sprintf("%s/%s (revision %d) is not a JSON object, so agents ignore it: %v", wire.BucketAgentConfig, e.Read.Key, e.Read.Revision, e.Err)
}
func (e *LayerError) Unwrap() error { return e.Err }

// Options tune Update.
type Options struct {
	// Expect, when not nil, is the revision the caller read (0: the layer
	// did not exist): a layer now at any other revision is refused with a
	// *kvcas.ConflictError before anything is written. Nil means "the
	// revision Update reads", still written with compare-and-set.
	Expect *uint64
	// AfterRead, when set, runs between the read and the write; tests use
	// it to make a concurrent change and prove the write is refused.
	AfterRead func(key string)
	// BeforeWrite, when set, runs once the edit is known to change the
	// layer, just before the write; an error from it aborts the update
	// with nothing written. The API stores its audit record here, so a
	// change is never made without one and no record is left for an
	// update that changes nothing or is refused.
	BeforeWrite func(Outcome) error
}

// Outcome is what Update read and did.
type Outcome struct {
	// Read is the layer as read (Revision 0: it did not exist).
	Read kvcas.Value
	// Layer is the layer's fields after the edit.
	Layer   map[string]json.RawMessage
	Changes []Change
	// Written reports a write; Revision is then the new revision, else
	// the revision read.
	Written  bool
	Revision uint64
}

// Update reads layer key of kv, lets edit change its fields (Apply or
// Clear), and writes it back with compare-and-set when some change says
// Changed. An absent layer is edited as empty; when nothing changed
// nothing is written (an absent layer stays absent).
func Update(ctx context.Context, kv jetstream.KeyValue, key string, o Options, edit func(map[string]json.RawMessage) []Change) (Outcome, error) {
	cur, err := kvcas.Read(ctx, kv, key)
	if err != nil {
		return Outcome{}, err
	}
	if o.AfterRead != nil {
		o.AfterRead(key)
	}
	if o.Expect != nil && *o.Expect != cur.Revision {
		return Outcome{}, &kvcas.ConflictError{Bucket: kv.Bucket(), Key: key, Read: *o.Expect}
	}
	m := map[string]json.RawMessage{}
	if cur.Revision > 0 {
		if m, err = fleetconfig.DecodeEditable(cur.Value); err != nil {
			return Outcome{}, &LayerError{Read: cur, Err: err}
		}
	}
	out := Outcome{Read: cur, Layer: m, Changes: edit(m), Revision: cur.Revision}
	if !slices.ContainsFunc(out.Changes, func(c Change) bool { return c.Changed }) {
		return out, nil
	}
	value, err := json.Marshal(m)
	if err != nil {
		return Outcome{}, fmt.Errorf("encoding %s/%s: %w", wire.BucketAgentConfig, key, err)
	}
	if o.BeforeWrite != nil {
		if err := o.BeforeWrite(out); err != nil {
			return Outcome{}, err
		}
	}
	if out.Revision, err = kvcas.Put(ctx, kv, key, value, cur.Revision); err != nil {
		return Outcome{}, err
	}
	out.Written = true
	return out, nil
}

// Target is one agent_config layer that sets target_version.
type Target struct {
	// Scope names the layer for people ("global", "group canary",
	// "pc pc-042"); Key is its agent_config key.
	Scope    string `json:"scope"`
	Key      string `json:"key"`
	Target   string `json:"target_version,omitempty"`
	Jitter   string `json:"target_version_jitter,omitempty"`
	Revision uint64 `json:"revision"`
	// Problem: agents ignore this layer's target (why).
	Problem string `json:"problem,omitempty"`
}

// ReadTargets reads every layer of agent_config and returns those that set
// target_version (or try to, with a value agents ignore), global first,
// then groups, then PCs, each sorted by key.
func ReadTargets(ctx context.Context, kv jetstream.KeyValue) ([]Target, error) {
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", kv.Bucket(), err)
	}
	var keys []string
	for k := range lister.Keys() {
		if _, ok := fleetconfig.ClassifyKey(k); ok {
			keys = append(keys, k)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("listing %s: %w", kv.Bucket(), err)
	}
	SortKeys(keys)
	var rows []Target
	for _, k := range keys {
		v, err := kvcas.Read(ctx, kv, k)
		if err != nil {
			return nil, err
		}
		if v.Revision == 0 {
			continue // deleted since it was listed
		}
		sc, _ := fleetconfig.ClassifyKey(k)
		row := Target{Scope: sc.String(), Key: k, Revision: v.Revision}
		layer, err := fleetconfig.ParseLayer(sc.String(), v.Value)
		if err != nil {
			if strings.Contains(string(v.Value), FieldTarget) {
				row.Problem = err.Error() + "; agents ignore the whole layer"
				rows = append(rows, row)
			}
			continue
		}
		raw, ok := layer.Fields[FieldTarget]
		if !ok {
			continue
		}
		var target string
		if json.Unmarshal(raw, &target) == nil {
			row.Target = target
		}
		for _, p := range fleetconfig.Resolve(fleetconfig.Defaults(1), &layer, nil, nil).Problems {
			if p.Field == FieldTarget || p.Field == FieldJitter {
				row.Problem = strings.TrimSuffix(p.Message, "; using the default") + "; agents ignore it"
			}
		}
		if j, ok := layer.Fields[FieldJitter]; ok {
			var s string
			if json.Unmarshal(j, &s) == nil {
				row.Jitter = s
			} else {
				row.Jitter = compact(j)
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// SortKeys orders agent_config keys by precedence (global, groups, PCs),
// then by key.
func SortKeys(keys []string) {
	slices.SortFunc(keys, func(x, y string) int {
		sx, _ := fleetconfig.ClassifyKey(x)
		sy, _ := fleetconfig.ClassifyKey(y)
		if rx, ry := sx.Rank(), sy.Rank(); rx != ry {
			return rx - ry
		}
		return strings.Compare(x, y)
	})
}

// Overrides returns the rows of more specific layers than key that set a
// usable target of their own: they win for their PCs, so a rollout at key
// does not reach those PCs.
func Overrides(rows []Target, key string) []Target {
	sc, _ := fleetconfig.ClassifyKey(key)
	rank := sc.Rank()
	var over []Target
	for _, r := range rows {
		rs, _ := fleetconfig.ClassifyKey(r.Key)
		rr := rs.Rank()
		if r.Key == key || r.Problem != "" {
			continue
		}
		// A PC layer beats everything; a group beats global, and of two
		// groups the later in alphabetical order wins for PCs in both.
		if rr > rank || (rr == 1 && rank == 1 && r.Key > key) {
			over = append(over, r)
		}
	}
	return over
}

// compact shows a stored JSON value on one line.
func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}
