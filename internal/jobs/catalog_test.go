package jobs_test

import (
	"errors"
	"testing"

	"github.com/kanade-project/kanade/internal/jobs"
	"github.com/kanade-project/kanade/internal/wire"
)

func TestCatalogCompareAndSet(t *testing.T) {
	v := newEnv(t)
	ctx := testCtx(t)
	cat, err := jobs.OpenCatalog(ctx, v.js)
	if err != nil {
		t.Fatal(err)
	}
	m1 := manifest(t, "cleanup", "1")
	rev1, err := cat.Put(ctx, m1, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Creating it again is a conflict, not an overwrite.
	if _, err := cat.Put(ctx, manifest(t, "cleanup", "9"), 0); !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}
	m2 := manifest(t, "cleanup", "2")
	rev2, err := cat.Put(ctx, m2, rev1)
	if err != nil {
		t.Fatal(err)
	}
	// A writer that read revision 1 loses against the one that wrote 2.
	if _, err := cat.Put(ctx, manifest(t, "cleanup", "3"), rev1); !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("stale update: %v, want ErrConflict", err)
	}
	e, err := cat.Get(ctx, "cleanup")
	if err != nil {
		t.Fatal(err)
	}
	if e.Revision != rev2 || e.Manifest.Version != "2" {
		t.Fatalf("stored revision %d version %q, want %d and 2", e.Revision, e.Manifest.Version, rev2)
	}
	if err := cat.Delete(ctx, "cleanup", rev1); !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("stale delete: %v, want ErrConflict", err)
	}
	if err := cat.Delete(ctx, "cleanup", rev2); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.Get(ctx, "cleanup"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("after delete: %v, want ErrNotFound", err)
	}
	// A deleted job can be created again.
	if _, err := cat.Put(ctx, m1, 0); err != nil {
		t.Fatalf("recreate: %v", err)
	}
}

func TestCatalogStoresCanonicalYAMLAndReadsLeniently(t *testing.T) {
	v := newEnv(t)
	ctx := testCtx(t)
	cat, err := jobs.OpenCatalog(ctx, v.js)
	if err != nil {
		t.Fatal(err)
	}
	m := manifest(t, "a", "1")
	if _, err := cat.Put(ctx, m, 0); err != nil {
		t.Fatal(err)
	}
	raw, err := v.kv(wire.BucketJobs).Get(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := m.YAML()
	if string(raw.Value()) != string(want) {
		t.Fatalf("stored value:\n%s\nwant the canonical YAML:\n%s", raw.Value(), want)
	}
	// A value written by a newer server, with keys this one does not know.
	if _, err := v.kv(wire.BucketJobs).Put(ctx, "b", []byte("id: b\nversion: \"7\"\nowner: ops\nexecute: {script: echo, sandbox: true}\n")); err != nil {
		t.Fatal(err)
	}
	list, err := cat.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Manifest.ID != "a" || list[1].Manifest.ID != "b" || list[1].Manifest.Version != "7" {
		t.Fatalf("List = %+v", list)
	}
	// Invalid manifests never reach the bucket.
	bad := manifest(t, "c", "1")
	bad.Execute.Shell = "zsh"
	if _, err := cat.Put(ctx, bad, 0); err == nil {
		t.Fatal("Put accepted an invalid manifest")
	}
	if _, err := cat.Get(ctx, "c"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("the invalid manifest was stored: %v", err)
	}
}
