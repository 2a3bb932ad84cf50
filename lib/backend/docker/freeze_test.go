package docker_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/backend/docker"
	"github.com/bb-bottles/bb/lib/backend/docker/freezetest"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/freeze"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/state"
)

// uniqueSlug is a slug no other run on this engine uses.
func uniqueSlug(prefix string) string {
	return prefix + "-" + strings.ToLower(time.Now().Format("150405.000000000")[7:])
}

// clock returns times a second apart from a fixed start, so tags differ
// however fast the commits are.
func clock() func() time.Time {
	t := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	return func() time.Time { t = t.Add(time.Second); return t }
}

func imageID(t *testing.T, c *client.Client, ref string) string {
	t.Helper()
	res, err := c.ImageInspect(context.Background(), ref)
	if err != nil {
		t.Fatalf("inspecting %s: %v", ref, err)
	}
	return res.ID
}

func TestDockerCommit(t *testing.T) {
	c := freezetest.Engine(t)
	st := freezetest.Store(t)
	slug := uniqueSlug("fz-commit")
	ctr := freezetest.Bottle(t, c, st, slug)
	freezetest.WriteFile(t, c, ctr, "/home/agent", "work.txt", "state worth keeping\n")

	f := &docker.Freezer{API: c}
	start := time.Now()
	rec, err := freeze.Commit(t.Context(), st, f, slug, freeze.Options{Labels: freezetest.Labels, Now: clock()})
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	t.Logf("committed in %v", time.Since(start).Round(time.Millisecond))

	want := freeze.Record{Slug: slug, Image: "bb/" + slug + ":20261126T120001Z", ID: rec.ID,
		Tags:    []string{"bb/" + slug + ":20261126T120001Z", "bb/" + slug + ":latest"},
		Created: time.Date(2026, 11, 26, 12, 0, 1, 0, time.UTC), Backend: "docker", Removed: []string{}}
	if diff := cmp.Diff(want, rec); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(rec.ID, "sha256:") {
		t.Errorf("id = %q, want sha256:...", rec.ID)
	}
	for _, ref := range rec.Tags {
		if id := imageID(t, c, ref); id != rec.ID {
			t.Errorf("%s is %s, want %s", ref, id, rec.ID)
		}
	}
	res, err := c.ImageInspect(t.Context(), rec.Image)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"bb.slug": slug, "bb.role": "snapshot", "bb.test": "1"} {
		if got := res.Config.Labels[k]; got != v {
			t.Errorf("label %s = %q, want %q", k, got, v)
		}
	}
	if got := freezetest.Run(t, c, rec.Image, "cat", "/home/agent/work.txt"); got != "state worth keeping\n" {
		t.Errorf("the snapshot's /home/agent/work.txt = %q, want the file written before the commit", got)
	}
	if s := freezetest.State(t, c, ctr); !s.Running || s.Paused {
		t.Errorf("after the commit the bottle is running=%v paused=%v, want running and not paused", s.Running, s.Paused)
	}

	md, err := st.ReadMetadata(slug)
	if err != nil {
		t.Fatal(err)
	}
	if !md.Preserved {
		t.Error("the bottle is not marked preserved")
	}
	wantImages := []state.Image{{Ref: rec.Image, ID: rec.ID, Created: rec.Created}}
	if diff := cmp.Diff(wantImages, md.Images); diff != "" {
		t.Errorf("metadata images (-want +got):\n%s", diff)
	}
}

func TestDockerKeepListRemove(t *testing.T) {
	c := freezetest.Engine(t)
	st := freezetest.Store(t)
	slug := uniqueSlug("fz-keep")
	freezetest.Bottle(t, c, st, slug)
	f := &docker.Freezer{API: c}
	now := clock()
	var recs []freeze.Record
	for i := range 3 {
		rec, err := freeze.Commit(t.Context(), st, f, slug, freeze.Options{Keep: 2, Labels: freezetest.Labels, Now: now})
		if err != nil {
			t.Fatalf("commit %d: %v", i+1, err)
		}
		recs = append(recs, rec)
	}
	if diff := cmp.Diff([]string{recs[0].Image}, recs[2].Removed); diff != "" {
		t.Errorf("the third commit with --keep 2 removed (-want +got):\n%s", diff)
	}
	if ok, _ := f.Exists(t.Context(), recs[0].Image); ok {
		t.Errorf("%s is still in the engine", recs[0].Image)
	}
	if id := imageID(t, c, freeze.LatestRef(slug)); id != recs[2].ID {
		t.Errorf("latest is %s, want the newest %s", id, recs[2].ID)
	}

	md, _ := st.ReadMetadata(slug)
	listed, err := freeze.List(t.Context(), f, md)
	if err != nil {
		t.Fatal(err)
	}
	want := []freeze.Listed{
		{Slug: slug, Image: recs[1].Image, ID: recs[1].ID, Created: recs[1].Created, Backend: "docker", Present: true},
		{Slug: slug, Image: recs[2].Image, ID: recs[2].ID, Created: recs[2].Created, Backend: "docker", Present: true, Latest: true},
	}
	if diff := cmp.Diff(want, listed); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}

	// Removing the newest by its tag moves latest back to the one before.
	tag := strings.TrimPrefix(recs[2].Image, "bb/"+slug+":")
	im, err := freeze.Remove(t.Context(), st, f, slug, tag)
	if err != nil {
		t.Fatalf("Remove %s: %v", tag, err)
	}
	if im.Ref != recs[2].Image {
		t.Errorf("removed %s, want %s", im.Ref, recs[2].Image)
	}
	if ok, _ := f.Exists(t.Context(), recs[2].Image); ok {
		t.Errorf("%s is still in the engine", recs[2].Image)
	}
	if _, err := c.ImageInspect(t.Context(), recs[2].ID); err == nil {
		t.Errorf("the image %s is still in the engine, untagged", recs[2].ID)
	}
	if id := imageID(t, c, freeze.LatestRef(slug)); id != recs[1].ID {
		t.Errorf("latest is %s after removing the newest, want %s", id, recs[1].ID)
	}
	_, err = freeze.Remove(t.Context(), st, f, slug, "20991231T000000Z")
	if !errors.Is(err, freeze.ErrNotFound) || exit.CodeOf(err) != exit.CodeUsage {
		t.Errorf("Remove of an unknown snapshot = %v (exit %d), want ErrNotFound, exit 2", err, exit.CodeOf(err))
	}
	// By ID, the last one: latest goes with it.
	if _, err := freeze.Remove(t.Context(), st, f, slug, recs[1].ID); err != nil {
		t.Fatal(err)
	}
	if ok, _ := f.Exists(t.Context(), freeze.LatestRef(slug)); ok {
		t.Error("latest is left with no snapshot behind it")
	}
	md, _ = st.ReadMetadata(slug)
	if len(md.Images) != 0 {
		t.Errorf("metadata images after removing them all: %v", md.Images)
	}
}

// failTag is a Docker freezer whose Tag fails, as an engine can between
// the commit and the tag.
type failTag struct{ *docker.Freezer }

func (failTag) Tag(context.Context, string, string) error {
	return exit.Backend(errors.New("tagging: engine gone"))
}

// A failed commit, however it fails, leaves the previous snapshot, latest
// and the metadata exactly as they were, and the bottle running.
func TestDockerFailedCommitKeepsPrevious(t *testing.T) {
	c := freezetest.Engine(t)
	st := freezetest.Store(t)
	slug := uniqueSlug("fz-fail")
	ctr := freezetest.Bottle(t, c, st, slug)
	freezetest.WriteFile(t, c, ctr, "/home/agent", "v1.txt", "one\n")
	f := &docker.Freezer{API: c}
	now := clock()
	first, err := freeze.Commit(t.Context(), st, f, slug, freeze.Options{Labels: freezetest.Labels, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := st.ReadMetadata(slug)
	refsBefore := refs(t, c, slug)

	// Enough for the engine to have started the commit, not finished it.
	freezetest.WriteFile(t, c, ctr, "/home/agent", "big.bin", strings.Repeat("x", 32<<20))
	tests := []struct {
		name   string
		cancel time.Duration // cancel the context after this long; 0: never
		f      freeze.Freezer
		code   int
	}{
		{"cancelled before", -1, f, exit.CodeInterrupted},
		{"cancelled during", 20 * time.Millisecond, f, exit.CodeInterrupted},
		{"tag fails", 0, failTag{f}, exit.CodeBackend},
		{"container gone", 0, f, exit.CodeBackend},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			switch {
			case tt.cancel < 0:
				cancel()
			case tt.cancel > 0:
				time.AfterFunc(tt.cancel, cancel)
			}
			if tt.name == "container gone" {
				if _, err := c.ContainerRemove(t.Context(), ctr, client.ContainerRemoveOptions{Force: true}); err != nil {
					t.Fatal(err)
				}
			}
			_, err := freeze.Commit(ctx, st, tt.f, slug, freeze.Options{Labels: freezetest.Labels, Now: now})
			if err == nil {
				t.Fatal("Commit succeeded")
			}
			if code := exit.CodeOf(err); code != tt.code {
				t.Errorf("exit %d (%v), want %d", code, err, tt.code)
			}
			after, _ := st.ReadMetadata(slug)
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("metadata changed (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(refsBefore, refs(t, c, slug)); diff != "" {
				t.Errorf("the engine's bb/%s images changed (-before +after):\n%s", slug, diff)
			}
			if id := imageID(t, c, freeze.LatestRef(slug)); id != first.ID {
				t.Errorf("latest is %s, want the previous snapshot %s", id, first.ID)
			}
			if got := freezetest.Run(t, c, freeze.LatestRef(slug), "cat", "/home/agent/v1.txt"); got != "one\n" {
				t.Errorf("the previous snapshot is not usable: cat gave %q", got)
			}
			if tt.name != "container gone" {
				// The engine finishes an interrupted commit on its own
				// and unpauses the bottle then.
				s := freezetest.State(t, c, ctr)
				for deadline := time.Now().Add(20 * time.Second); s.Paused && time.Now().Before(deadline); {
					time.Sleep(50 * time.Millisecond)
					s = freezetest.State(t, c, ctr)
				}
				if !s.Running || s.Paused {
					t.Errorf("the bottle is running=%v paused=%v, want running", s.Running, s.Paused)
				}
			}
		})
	}
}

// refs lists the tags of bb/<slug> in the engine, with their image IDs.
func refs(t *testing.T, c *client.Client, slug string) []string {
	t.Helper()
	res, err := c.ImageList(context.Background(), client.ImageListOptions{Filters: client.Filters{}.Add("reference", "bb/"+slug)})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, im := range res.Items {
		for _, tag := range im.RepoTags {
			out = append(out, tag+"="+im.ID)
		}
	}
	slices.Sort(out)
	return out
}

// BenchmarkFreezeCommit and BenchmarkDockerCommitRaw commit the same kind
// of container: bb-freeze's whole commit (lock, commit, tags, metadata)
// against the engine's bare commit. A shared engine is noisy, so
// BenchmarkFreezeCommit also makes one raw commit per round outside its
// timer and reports the ratio of the two as x-raw (the goal is 1.1 at most).
// No --keep: removing an old snapshot makes the engine delete its layer,
// which is a cost of pruning, not of committing (about a quarter of a
// commit here).
func BenchmarkFreezeCommit(b *testing.B) {
	c, st, slug := benchBottle(b)
	f := &docker.Freezer{API: c}
	now := clock()
	var raw time.Duration
	b.ResetTimer()
	for b.Loop() {
		if _, err := freeze.Commit(b.Context(), st, f, slug, freeze.Options{Labels: freezetest.Labels, Now: now}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		start := time.Now()
		rawCommit(b, c, slug)
		raw += time.Since(start)
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed())/float64(raw), "x-raw")
	b.ReportMetric(float64(raw.Nanoseconds())/float64(b.N), "raw-ns/op")
}

func rawCommit(b *testing.B, c *client.Client, slug string) {
	_, err := c.ContainerCommit(b.Context(), names.Agent(slug), client.ContainerCommitOptions{Reference: "bb/" + slug + ":raw"})
	if err != nil {
		b.Fatal(err)
	}
}

func BenchmarkDockerCommitRaw(b *testing.B) {
	c, _, slug := benchBottle(b)
	b.ResetTimer()
	for b.Loop() {
		rawCommit(b, c, slug)
	}
}

// benchBottle is one bottle per benchmark run (not per b.N round), with a
// file written so that the commit has a layer to write.
func benchBottle(b *testing.B) (*client.Client, *state.Store, string) {
	c := freezetest.Engine(b)
	st := freezetest.Store(b)
	slug := uniqueSlug("fz-bench")
	ctr := freezetest.Bottle(b, c, st, slug)
	freezetest.WriteFile(b, c, ctr, "/home/agent", "work.txt", strings.Repeat("x", 1<<20))
	return c, st, slug
}
