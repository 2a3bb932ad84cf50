package freeze

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bb-bottles/bb/lib/state"
)

// memFreezer keeps snapshots as a map from reference to ID. sabotage, when
// set, runs inside Commit: a way to make a later step fail.
type memFreezer struct {
	refs     map[string]string
	n        int
	sabotage func()
}

func (m *memFreezer) Backend() string                           { return "docker" }
func (m *memFreezer) NeedsStop() bool                           { return false }
func (m *memFreezer) Running(context.Context) ([]string, error) { return nil, nil }
func (m *memFreezer) Exists(_ context.Context, ref string) (bool, error) {
	_, ok := m.refs[ref]
	return ok, nil
}
func (m *memFreezer) Commit(_ context.Context, t Target) (string, error) {
	m.n++
	id := "sha256:" + string(rune('a'+m.n))
	m.refs[t.Ref] = id
	if m.sabotage != nil {
		m.sabotage()
	}
	return id, nil
}
func (m *memFreezer) Tag(_ context.Context, src, dst string) error {
	if id, ok := m.refs[src]; ok {
		src = id
	}
	m.refs[dst] = src
	return nil
}
func (m *memFreezer) Remove(_ context.Context, ref string) error {
	delete(m.refs, ref)
	return nil
}

func TestFailedMetadataWriteUndoesTheSnapshot(t *testing.T) {
	st := &state.Store{Dir: t.TempDir()}
	const slug = "demo-a1b2"
	if err := st.WriteMetadata(slug, state.Metadata{Slug: slug, Agent: "demo", Backend: "docker",
		Created: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	f := &memFreezer{refs: map[string]string{}}
	clock := time.Date(2026, 11, 26, 13, 0, 0, 0, time.UTC)
	now := func() time.Time { clock = clock.Add(time.Minute); return clock }
	first, err := Commit(t.Context(), st, f, slug, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]string{first.Image: f.refs[first.Image], LatestRef(slug): f.refs[first.Image]}
	if diff := cmp.Diff(before, f.refs); diff != "" {
		t.Fatalf("after the first commit (-want +got):\n%s", diff)
	}

	// The second commit's metadata write fails: metadata.json has become a
	// folder, which no rename can replace.
	md := filepath.Join(st.Dir, slug, state.MetadataFile)
	saved, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	f.sabotage = func() {
		os.Remove(md)
		os.Mkdir(md, 0o700)
		os.WriteFile(filepath.Join(md, "keep"), nil, 0o600)
	}
	if _, err := Commit(t.Context(), st, f, slug, Options{Now: now}); err == nil {
		t.Fatal("the commit succeeded although its metadata could not be written")
	}
	if diff := cmp.Diff(before, f.refs); diff != "" {
		t.Errorf("a failed commit changed the snapshots (-want +got):\n%s", diff)
	}
	os.RemoveAll(md)
	os.WriteFile(md, saved, 0o600)
	got, err := st.ReadMetadata(slug)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Images) != 1 || got.Images[0].Ref != first.Image {
		t.Errorf("metadata images = %+v, want only %s", got.Images, first.Image)
	}
}
