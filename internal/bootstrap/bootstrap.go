// Package bootstrap creates and reconciles every JetStream resource kanade
// uses (DESIGN.md §2): streams, KV buckets and object stores.
//
// Setup is idempotent: a second run on an unchanged system changes nothing
// and reports every resource as unchanged; a resource whose managed limits
// differ from the spec is updated in place (its data kept). KV buckets and
// object stores are created through the jetstream API, so their streams have
// exactly the shape nats.go and the nats CLI expect, and then reconciled at
// the stream level, because the KV API cannot set MaxConsumers: every KV
// watch and object download is a consumer, and the server's default cap of
// 1,000 consumers per stream would stop agent 1,001 from watching its config.
package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/wire"
)

// Day is 24 hours.
const Day = 24 * time.Hour

// MaxConsumers is the consumer cap set on KV and object store streams: one
// watcher per agent per bucket, with room for a fleet of tens of thousands.
const MaxConsumers = 1_000_000

// Kind of a resource.
type Kind string

const (
	KindStream Kind = "stream"
	KindKV     Kind = "kv"
	KindObject Kind = "object"
)

// Resource is one JetStream resource with its managed limits.
type Resource struct {
	Kind Kind
	// Name is the stream name, or the bucket name for KV and object stores.
	Name     string
	Subjects []string // streams only
	MaxAge   time.Duration
	MaxBytes int64
	// MaxMsgsPerSubject is the per-subject cap (EXEC: 1; KV: history).
	MaxMsgsPerSubject int64
	MaxConsumers      int
	Duplicates        time.Duration
	// AllowDirect lets any replica answer last-message gets, with the
	// subject in the request subject: that is what lets a NATS role
	// scope an agent's reads to its own subjects (internal/natsauth).
	AllowDirect bool
}

// StreamName is the name of the stream backing r.
func (r Resource) StreamName() string {
	switch r.Kind {
	case KindKV:
		return "KV_" + r.Name
	case KindObject:
		return "OBJ_" + r.Name
	}
	return r.Name
}

// Options select the shape of the deployment.
type Options struct {
	// Replicas for every resource: 1 on a single server, 3 on a cluster;
	// existing resources with another count are changed in place.
	//
	// 0 keeps the count of every existing resource and creates missing
	// ones with the highest count among the existing ones (1 when none
	// exist): a run that does not name a count never scales a cluster
	// down, and a resource added by a newer version joins an R3
	// deployment at R3.
	Replicas int
}

// Spec returns every resource kanade needs, with its limits.
func Spec() []Resource {
	const MiB, GiB = int64(1 << 20), int64(1 << 30)
	return []Resource{
		// One message per subject: an agent back from a week offline
		// replays only the newest command on each of its subjects.
		// Direct gets: an agent may read only its own command subjects.
		{Kind: KindStream, Name: wire.StreamExec, Subjects: []string{wire.SubjectCommandsWild}, MaxAge: 7 * Day, MaxBytes: 256 * MiB, MaxMsgsPerSubject: 1, AllowDirect: true},
		{Kind: KindStream, Name: wire.StreamResults, Subjects: []string{wire.SubjectResultsWild}, MaxAge: 30 * Day, MaxBytes: 4 * GiB, Duplicates: 10 * time.Minute},
		{Kind: KindStream, Name: wire.StreamEvents, Subjects: []string{wire.SubjectEventsWild}, MaxAge: 7 * Day, MaxBytes: 512 * MiB, Duplicates: 10 * time.Minute},
		{Kind: KindStream, Name: wire.StreamObs, Subjects: []string{wire.SubjectObsWild}, MaxAge: 90 * Day, MaxBytes: 512 * MiB, Duplicates: 10 * time.Minute},
		{Kind: KindStream, Name: wire.StreamInventory, Subjects: []string{wire.SubjectInventoryWild}, MaxAge: 90 * Day, MaxBytes: 1 * GiB},
		{Kind: KindStream, Name: wire.StreamAudit, Subjects: []string{wire.SubjectAuditWild}, MaxAge: 90 * Day, MaxBytes: 256 * MiB},

		{Kind: KindKV, Name: wire.BucketAgentConfig, MaxMsgsPerSubject: 10, MaxBytes: 64 * MiB, MaxConsumers: MaxConsumers},
		{Kind: KindKV, Name: wire.BucketAgentGroups, MaxMsgsPerSubject: 5, MaxBytes: 64 * MiB, MaxConsumers: MaxConsumers},
		{Kind: KindKV, Name: wire.BucketScriptCurrent, MaxMsgsPerSubject: 5, MaxBytes: 64 * MiB, MaxConsumers: MaxConsumers},
		{Kind: KindKV, Name: wire.BucketScriptStatus, MaxMsgsPerSubject: 5, MaxBytes: 64 * MiB, MaxConsumers: MaxConsumers},
		{Kind: KindKV, Name: wire.BucketJobs, MaxMsgsPerSubject: 10, MaxBytes: 64 * MiB, MaxConsumers: MaxConsumers},
		{Kind: KindKV, Name: wire.BucketSchedules, MaxMsgsPerSubject: 10, MaxBytes: 64 * MiB, MaxConsumers: MaxConsumers},
		{Kind: KindKV, Name: wire.BucketFleetConfig, MaxMsgsPerSubject: 10, MaxBytes: 16 * MiB, MaxConsumers: MaxConsumers},

		{Kind: KindObject, Name: wire.ObjectAgentReleases, MaxBytes: 2 * GiB, MaxConsumers: MaxConsumers},
		{Kind: KindObject, Name: wire.ObjectResultOutput, MaxAge: 30 * Day, MaxBytes: 4 * GiB, MaxConsumers: MaxConsumers},
		{Kind: KindObject, Name: wire.ObjectScripts, MaxBytes: 256 * MiB, MaxConsumers: MaxConsumers},
	}
}

// Action is what Setup did to one resource.
type Action string

const (
	Created   Action = "created"
	Updated   Action = "updated"
	Unchanged Action = "unchanged"
)

// Change reports what Setup did to one resource.
type Change struct {
	Resource Resource
	Action   Action
	// Fields lists the limits that were reconciled (Updated only).
	Fields []string
	// Replicas is the resource's replica count after Setup.
	Replicas int
}

// Setup creates missing resources and reconciles the limits of existing
// ones. It stops at the first error, having reported what it did so far.
func Setup(ctx context.Context, js jetstream.JetStream, o Options) ([]Change, error) {
	// want 0 leaves each existing resource's count alone in reconcile.
	want, fresh := max(o.Replicas, 0), o.Replicas
	if want == 0 {
		n, err := existingReplicas(ctx, js)
		if err != nil {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
		fresh = n
	}
	var out []Change
	for _, r := range Spec() {
		c, err := ensure(ctx, js, r, fresh, want)
		if err != nil {
			return out, fmt.Errorf("bootstrap %s %s: %w", r.Kind, r.Name, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// existingReplicas is the highest replica count among the existing
// resources of the spec, 1 when none exists.
func existingReplicas(ctx context.Context, js jetstream.JetStream) (int, error) {
	n := 1
	for _, r := range Spec() {
		s, err := js.Stream(ctx, r.StreamName())
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("%s %s: %w", r.Kind, r.Name, err)
		}
		n = max(n, s.CachedInfo().Config.Replicas)
	}
	return n, nil
}

// ensure creates r with fresh replicas when it is missing, and reconciles
// its limits, replicas to want (0: kept as they are).
func ensure(ctx context.Context, js jetstream.JetStream, r Resource, fresh, want int) (Change, error) {
	s, err := js.Stream(ctx, r.StreamName())
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if err := create(ctx, js, r, fresh); err != nil {
			return Change{}, err
		}
		// The KV and object APIs cannot set every managed limit; finish
		// the job at the stream level.
		s, err = js.Stream(ctx, r.StreamName())
		if err != nil {
			return Change{}, err
		}
		n, _, err := reconcile(ctx, js, s, r, want)
		if err != nil {
			return Change{}, err
		}
		return Change{Resource: r, Action: Created, Replicas: n}, nil
	case err != nil:
		return Change{}, err
	}
	n, fields, err := reconcile(ctx, js, s, r, want)
	if err != nil {
		return Change{}, err
	}
	if len(fields) == 0 {
		return Change{Resource: r, Action: Unchanged, Replicas: n}, nil
	}
	return Change{Resource: r, Action: Updated, Fields: fields, Replicas: n}, nil
}

func create(ctx context.Context, js jetstream.JetStream, r Resource, replicas int) error {
	switch r.Kind {
	case KindKV:
		_, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:   r.Name,
			History:  uint8(r.MaxMsgsPerSubject),
			MaxBytes: r.MaxBytes,
			TTL:      r.MaxAge,
			Storage:  jetstream.FileStorage,
			Replicas: replicas,
		})
		return err
	case KindObject:
		_, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:   r.Name,
			MaxBytes: r.MaxBytes,
			TTL:      r.MaxAge,
			Storage:  jetstream.FileStorage,
			Replicas: replicas,
		})
		return err
	default:
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name:              r.Name,
			Subjects:          r.Subjects,
			Storage:           jetstream.FileStorage,
			Retention:         jetstream.LimitsPolicy,
			Discard:           jetstream.DiscardOld,
			MaxAge:            r.MaxAge,
			MaxBytes:          r.MaxBytes,
			MaxMsgsPerSubject: orMinusOne(r.MaxMsgsPerSubject),
			MaxConsumers:      orMinusOneInt(r.MaxConsumers),
			Duplicates:        r.Duplicates,
			AllowDirect:       r.AllowDirect,
			Replicas:          replicas,
		})
		return err
	}
}

// reconcile updates the managed limits of an existing stream, replicas to
// replicas unless it is 0, and returns the stream's replica count and the
// names of the fields it changed.
func reconcile(ctx context.Context, js jetstream.JetStream, s jetstream.Stream, r Resource, replicas int) (int, []string, error) {
	cfg := s.CachedInfo().Config
	want := cfg
	if r.Kind == KindStream {
		want.Subjects = r.Subjects
		want.MaxMsgsPerSubject = orMinusOne(r.MaxMsgsPerSubject)
		if r.Duplicates > 0 {
			want.Duplicates = r.Duplicates
		}
		want.AllowDirect = r.AllowDirect
	}
	if r.Kind == KindKV && r.MaxMsgsPerSubject > 0 {
		want.MaxMsgsPerSubject = r.MaxMsgsPerSubject
	}
	want.MaxAge = r.MaxAge
	want.MaxBytes = r.MaxBytes
	want.MaxConsumers = orMinusOneInt(r.MaxConsumers)
	if replicas > 0 {
		want.Replicas = replicas
	}

	var fields []string
	if !slices.Equal(cfg.Subjects, want.Subjects) {
		fields = append(fields, "subjects")
	}
	if cfg.MaxMsgsPerSubject != want.MaxMsgsPerSubject {
		fields = append(fields, "max_msgs_per_subject")
	}
	if cfg.Duplicates != want.Duplicates {
		fields = append(fields, "duplicate_window")
	}
	if cfg.MaxAge != want.MaxAge {
		fields = append(fields, "max_age")
	}
	if cfg.MaxBytes != want.MaxBytes {
		fields = append(fields, "max_bytes")
	}
	if cfg.MaxConsumers != want.MaxConsumers {
		fields = append(fields, "max_consumers")
	}
	if cfg.Replicas != want.Replicas {
		fields = append(fields, "replicas")
	}
	if cfg.AllowDirect != want.AllowDirect {
		fields = append(fields, "allow_direct")
	}
	if len(fields) == 0 {
		return want.Replicas, nil, nil
	}
	if _, err := js.UpdateStream(ctx, want); err != nil {
		return 0, nil, fmt.Errorf("reconciling %v: %w", fields, err)
	}
	return want.Replicas, fields, nil
}

func orMinusOne(v int64) int64 {
	if v <= 0 {
		return -1
	}
	return v
}

func orMinusOneInt(v int) int {
	if v <= 0 {
		return -1
	}
	return v
}
