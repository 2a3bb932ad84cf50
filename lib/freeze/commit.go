package freeze

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/state"
)

// Record is what bb-freeze commit prints for one snapshot.
type Record struct {
	// Slug names the bottle.
	Slug string `json:"slug"`
	// Image is the snapshot's reference, bb/<slug>:<UTC time> (a file path
	// for smolvm); bb resume boots the newest.
	Image string `json:"image"`
	// ID is the backend's content ID of the snapshot (sha256:...).
	ID string `json:"id"`
	// Tags are the references that name it: Image and bb/<slug>:latest.
	Tags []string `json:"tags"`
	// Created is when it was committed, RFC 3339 in UTC.
	Created time.Time `json:"created"`
	// Backend is the bottle's backend: docker, macos-container or smolvm.
	Backend string `json:"backend"`
	// Removed are the older snapshots --keep removed; [] when none.
	Removed []string `json:"removed"`
}

// Options tune Commit.
type Options struct {
	// Keep, when above 0, removes the snapshots beyond the Keep newest
	// (the new one is always kept).
	Keep int
	// Labels go on the snapshot besides bb.slug and bb.role (tests add
	// bb.test=1).
	Labels map[string]string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Warn is told of what went wrong without failing the commit (an old
	// snapshot --keep could not remove); nil drops it.
	Warn func(format string, a ...any)
}

// rollbackTimeout bounds the undoing of a failed commit, which runs even
// when ctx is already cancelled.
const rollbackTimeout = 30 * time.Second

// Commit snapshots bottle slug with f: it takes the bottle's lock, commits
// its agent container as bb/<slug>:<UTC time>, points bb/<slug>:latest at
// it, appends it to the metadata's images and marks the bottle preserved,
// then applies opts.Keep. If any step before the metadata is written fails
// (or ctx is cancelled), the steps already done are undone: the previous
// snapshot, latest and the metadata are as they were.
func Commit(ctx context.Context, st *state.Store, f Freezer, slug string, opts Options) (Record, error) {
	if err := state.CheckSlug(slug); err != nil {
		return Record{}, exit.Usage(fmt.Errorf("committing: %w", err))
	}
	if !st.Exists(slug) {
		return Record{}, exit.Usage(fmt.Errorf("committing: %w", &state.NotFoundError{Slug: slug, Dir: st.Dir}),
			"bb-launch ls lists the bottles")
	}
	unlock, err := st.Lock(ctx, slug)
	if err != nil {
		return Record{}, err
	}
	defer unlock()
	md, err := st.ReadMetadata(slug)
	if err != nil {
		return Record{}, exit.Usage(fmt.Errorf("committing bottle %s: %w", slug, err))
	}
	if md.Backend != "" && md.Backend != f.Backend() {
		return Record{}, exit.Usage(fmt.Errorf("committing bottle %s: it runs on %s, not %s", slug, md.Backend, f.Backend()))
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	created := now().UTC()
	ref := newRef(slug, created, md.Images)
	latest := LatestRef(slug)

	id, err := f.Commit(ctx, Target{Slug: slug, Container: names.Agent(slug), Ref: ref, Labels: opts.Labels})
	if err != nil {
		// A backend may finish a commit whose request was cancelled.
		Undo(ctx, func(ctx context.Context) error { return f.Remove(ctx, ref) })
		return Record{}, interrupted(ctx, err)
	}
	if err := f.Tag(ctx, ref, latest); err != nil {
		Undo(ctx, func(ctx context.Context) error { return f.Remove(ctx, ref) })
		return Record{}, interrupted(ctx, err)
	}
	prev := md.Images
	md.Images = append(slices.Clone(prev), state.Image{Ref: ref, ID: id, Created: created})
	md.Preserved = true
	if md.Backend == "" {
		md.Backend = f.Backend()
	}
	// The metadata write is the commit point: an interrupt before it, or its
	// own failure, undoes the snapshot.
	err = ctx.Err()
	if err == nil {
		err = st.WriteMetadata(slug, md)
	}
	if err != nil {
		Undo(ctx, func(ctx context.Context) error {
			if err := restoreLatest(ctx, f, slug, prev); err != nil {
				return err
			}
			return f.Remove(ctx, ref)
		})
		if ctx.Err() != nil {
			return Record{}, ctx.Err()
		}
		return Record{}, fmt.Errorf("recording snapshot %s: %w", ref, err)
	}

	rec := Record{Slug: slug, Image: ref, ID: id, Tags: []string{ref, latest}, Created: created,
		Backend: f.Backend(), Removed: []string{}}
	if opts.Keep > 0 {
		rec.Removed = prune(ctx, st, f, &md, ref, opts)
	}
	return rec, nil
}

// interrupted returns ctx's error when ctx is done, since err is then only
// its consequence (an engine request cut short), and err otherwise.
func interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// newRef returns bb/<slug>:<time>, with -2, -3... when an earlier snapshot
// of the same second has the name.
func newRef(slug string, t time.Time, images []state.Image) string {
	base := Repo(slug) + ":" + timeTag(t)
	ref := base
	for n := 2; slices.ContainsFunc(images, func(im state.Image) bool { return im.Ref == ref }); n++ {
		ref = base + "-" + strconv.Itoa(n)
	}
	return ref
}

// restoreLatest points latest back at the newest of images, or removes it
// when there is none.
func restoreLatest(ctx context.Context, f Freezer, slug string, images []state.Image) error {
	if len(images) == 0 {
		return f.Remove(ctx, LatestRef(slug))
	}
	return f.Tag(ctx, newest(images).Ref, LatestRef(slug))
}

// Undo runs fn with a context that outlives ctx's cancellation, since an
// interrupted commit must still be undone. Its error is dropped: the
// caller reports the error that made it undo.
func Undo(ctx context.Context, fn func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	_ = fn(ctx)
}

// byAge sorts snapshots oldest first.
func byAge(a, b state.Image) int {
	return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.Ref, b.Ref))
}

func newest(images []state.Image) state.Image { return slices.MaxFunc(images, byAge) }

// prune removes the snapshots of md beyond the opts.Keep newest, never
// keep, from the backend and then from the metadata, and returns the refs
// removed. A snapshot the backend will not remove (a container uses it) is
// kept and warned about.
func prune(ctx context.Context, st *state.Store, f Freezer, md *state.Metadata, keep string, opts Options) []string {
	warn := opts.Warn
	if warn == nil {
		warn = func(string, ...any) {}
	}
	images := slices.Clone(md.Images)
	slices.SortStableFunc(images, byAge)
	removed := []string{}
	var kept []state.Image
	for i, im := range images {
		if i >= len(images)-opts.Keep || im.Ref == keep {
			kept = append(kept, im)
			continue
		}
		if err := f.Remove(ctx, im.Ref); err != nil {
			warn("keeping old snapshot %s: %v", im.Ref, err)
			kept = append(kept, im)
			continue
		}
		removed = append(removed, im.Ref)
	}
	if len(removed) == 0 {
		return removed
	}
	md.Images = kept
	if err := st.WriteMetadata(md.Slug, *md); err != nil {
		warn("the metadata still lists the removed snapshots %v: %v", removed, err)
	}
	return removed
}

// Remove removes one snapshot of bottle slug, named by its reference, its
// tag or its ID, from the backend and the metadata, under the bottle's
// lock. When it is the newest, latest moves to the one before (or goes). A
// snapshot the metadata does not list is a usage error wrapping
// ErrNotFound.
func Remove(ctx context.Context, st *state.Store, f Freezer, slug, name string) (state.Image, error) {
	if err := state.CheckSlug(slug); err != nil {
		return state.Image{}, exit.Usage(fmt.Errorf("removing a snapshot: %w", err))
	}
	if !st.Exists(slug) {
		return state.Image{}, exit.Usage(fmt.Errorf("removing a snapshot: %w", &state.NotFoundError{Slug: slug, Dir: st.Dir}),
			"bb-freeze ls lists the snapshots")
	}
	unlock, err := st.Lock(ctx, slug)
	if err != nil {
		return state.Image{}, err
	}
	defer unlock()
	md, err := st.ReadMetadata(slug)
	if err != nil {
		return state.Image{}, exit.Usage(fmt.Errorf("removing a snapshot of bottle %s: %w", slug, err))
	}
	im, i, err := Find(md, name)
	if err != nil {
		return state.Image{}, err
	}
	rest := slices.Delete(slices.Clone(md.Images), i, i+1)
	isNewest := newest(md.Images).Ref == im.Ref
	if isNewest {
		// Move latest off it first, so that removing its own tag leaves
		// it with none and the engine deletes it.
		if err := restoreLatest(ctx, f, slug, present(ctx, f, rest)); err != nil {
			return state.Image{}, interrupted(ctx, err)
		}
	}
	if err := f.Remove(ctx, im.Ref); err != nil {
		if isNewest {
			Undo(ctx, func(ctx context.Context) error { return f.Tag(ctx, im.Ref, LatestRef(slug)) })
		}
		return state.Image{}, interrupted(ctx, err)
	}
	md.Images = rest
	if err := st.WriteMetadata(slug, md); err != nil {
		return state.Image{}, fmt.Errorf("removing snapshot %s from the metadata (the backend no longer has it): %w", im.Ref, err)
	}
	return im, nil
}

// Find returns the snapshot of md that name names (its reference, its tag
// or its ID) and its index in md.Images. A name that names none is a usage
// error wrapping ErrNotFound.
func Find(md state.Metadata, name string) (state.Image, int, error) {
	i := slices.IndexFunc(md.Images, func(im state.Image) bool { return matches(md.Slug, im, name) })
	if i < 0 {
		return state.Image{}, -1, exit.Usage(fmt.Errorf("bottle %s: %w %q", md.Slug, ErrNotFound, name),
			"bb-freeze ls "+md.Slug+" lists its snapshots")
	}
	return md.Images[i], i, nil
}

// present keeps the images the backend still has; one it cannot check
// counts as present.
func present(ctx context.Context, f Freezer, images []state.Image) []state.Image {
	var out []state.Image
	for _, im := range images {
		if ok, err := f.Exists(ctx, im.Ref); ok || err != nil {
			out = append(out, im)
		}
	}
	return out
}

// matches reports whether name names im: its reference, its tag, its ID,
// or its ID without "sha256:" (at least 12 digits of it).
func matches(slug string, im state.Image, name string) bool {
	if name == "" {
		return false
	}
	if name == im.Ref || Repo(slug)+":"+name == im.Ref || name == im.ID {
		return true
	}
	hex := im.ID
	if len(hex) > 7 && hex[:7] == "sha256:" {
		hex = hex[7:]
	}
	return len(name) >= 12 && len(name) <= len(hex) && hex[:len(name)] == name
}

// Listed is one snapshot as bb-freeze ls prints it.
type Listed struct {
	// Slug names the bottle.
	Slug string `json:"slug"`
	// Image is the snapshot's reference.
	Image string `json:"image"`
	// ID is its content ID.
	ID string `json:"id"`
	// Created is when it was committed, RFC 3339 in UTC.
	Created time.Time `json:"created"`
	// Backend is the bottle's backend.
	Backend string `json:"backend"`
	// Latest is true for the bottle's newest snapshot, the one
	// bb/<slug>:latest names and bb resume boots.
	Latest bool `json:"latest"`
	// Present is whether the backend still has it.
	Present bool `json:"present"`
}

// List returns md's snapshots, oldest first, each checked with f.
func List(ctx context.Context, f Freezer, md state.Metadata) ([]Listed, error) {
	images := slices.Clone(md.Images)
	slices.SortStableFunc(images, byAge)
	out := make([]Listed, 0, len(images))
	for i, im := range images {
		ok, err := f.Exists(ctx, im.Ref)
		if err != nil {
			return nil, err
		}
		out = append(out, Listed{Slug: md.Slug, Image: im.Ref, ID: im.ID, Created: im.Created,
			Backend: cmp.Or(md.Backend, f.Backend()), Latest: i == len(images)-1, Present: ok})
	}
	return out, nil
}
