package smolvm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/freeze"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/plan"
)

// Freezer snapshots bottles that are smolvm machines: `smolvm pack create
// --from-vm NAME --output PATH` of the stopped agent machine (src/cli/pack.rs
// PackCreateCmd, which refuses a running one; README "Snapshot a machine
// into a reusable image"). smolvm writes PATH, an executable stub, and
// PATH.smolmachine, the machine's disks; bb keeps the latter (machine create
// --from takes it) and removes the stub. smolvm has no image store, so a
// snapshot is a file: bb/<slug>:<tag> is <Dir>/<slug>/images/<tag>.smolmachine,
// latest a symbolic link beside it. Labels have nowhere to go.
type Freezer struct {
	b *Backend
	// Dir is the state directory (state.Store.Dir).
	Dir string
}

// SnapshotExt ends a snapshot's file, as smolvm names a pack's.
const SnapshotExt = ".smolmachine"

// Backend is "smolvm".
func (s *Freezer) Backend() string { return names.Smolvm }

// NeedsStop is true: pack create --from-vm packs a stopped machine.
func (s *Freezer) NeedsStop() bool { return true }

// splitRef splits bb/<slug>:<tag>.
func splitRef(ref string) (slug, tag string, ok bool) {
	rest, ok := strings.CutPrefix(ref, "bb/")
	if !ok {
		return "", "", false
	}
	slug, tag, ok = strings.Cut(rest, ":")
	return slug, tag, ok && slug != "" && tag != ""
}

// isSnapshot says whether ref names a snapshot (bb/<slug>:<tag>) rather
// than an agent image.
func isSnapshot(ref string) bool {
	_, _, ok := splitRef(ref)
	return ok
}

// snapshotPath is the file of snapshot ref under the state folder dir.
func snapshotPath(dir, ref string) (string, error) {
	slug, tag, ok := splitRef(ref)
	if !ok || strings.ContainsAny(slug+tag, `/\`) || tag == "." || tag == ".." || strings.HasPrefix(slug, ".") {
		return "", exit.Usagef("snapshot reference %q: want bb/<slug>:<tag>", ref)
	}
	return filepath.Join(dir, slug, "images", tag+SnapshotExt), nil
}

// Path returns the file that holds snapshot ref.
func (s *Freezer) Path(ref string) (string, error) { return snapshotPath(s.Dir, ref) }

// Running lists the bottles whose agent machine runs.
func (s *Freezer) Running(ctx context.Context) ([]string, error) {
	t, err := s.b.tool()
	if errors.Is(err, errNoSmolvm) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ms, err := t.machines(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing running bottles: %w", err)
	}
	var slugs []string
	for _, m := range ms {
		slug := m.Labels[names.LabelSlug]
		if slug == "" || !m.running() || m.Name != names.Agent(slug) || slices.Contains(slugs, slug) {
			continue
		}
		slugs = append(slugs, slug)
	}
	slices.Sort(slugs)
	return slugs, nil
}

// Commit packs t.Container into t.Ref's file. A running machine is stopped
// first (the person agreed: NeedsStop) and started again afterwards, also
// when packing failed, with the agent's command started again under its
// holder: what ran in it has ended. The ID is the file's SHA-256.
func (s *Freezer) Commit(ctx context.Context, t freeze.Target) (id string, err error) {
	path, err := s.Path(t.Ref)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("committing bottle %s: %w", t.Slug, err)
	}
	tl, err := s.b.tool()
	if err != nil {
		return "", err
	}
	ms, err := tl.machines(ctx)
	if err != nil {
		return "", err
	}
	m := find(ms, t.Container)
	if m == nil {
		return "", exit.Usagef("bottle %s has no machine %s to commit", t.Slug, t.Container)
	}
	if m.running() {
		if err := tl.run(ctx, nil, "machine", "stop", "--name", t.Container); err != nil {
			return "", fmt.Errorf("stopping bottle %s: %w", t.Slug, err)
		}
		defer func() {
			freeze.Undo(ctx, func(ctx context.Context) error {
				if serr := s.restart(ctx, tl, t); serr != nil && err == nil {
					err = exit.Backend(fmt.Errorf("starting bottle %s again after its snapshot: %w", t.Slug, serr),
						"the snapshot "+t.Ref+" was made; 'bb-launch resume "+t.Slug+"' starts the bottle")
				}
				return nil
			})
		}()
	}
	stub := strings.TrimSuffix(path, SnapshotExt)
	err = tl.run(ctx, nil, "pack", "create", "--from-vm", t.Container, "--output", stub)
	os.Remove(stub)
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("packing bottle %s: %w", t.Slug, err)
	}
	return fileID(path)
}

// restart starts the agent machine again, and the agent's command under
// its holder, for a person to attach to.
func (s *Freezer) restart(ctx context.Context, tl *tool, t freeze.Target) error {
	if err := tl.run(ctx, nil, "machine", "start", "--name", t.Container); err != nil {
		return err
	}
	b, err := s.b.store.ReadPlan(t.Slug)
	if err != nil {
		return err
	}
	var p plan.Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("reading bottle %s's plan: %w", t.Slug, err)
	}
	if p.Smolvm == nil || p.Smolvm.VM != t.Container {
		return fmt.Errorf("bottle %s's plan is not for machine %s", t.Slug, t.Container)
	}
	_, err = startHolder(ctx, tl, &p, false)
	return err
}

func fileID(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", exit.Backend(fmt.Errorf("reading the packed snapshot: %w", err))
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", exit.Backend(fmt.Errorf("reading the packed snapshot %s: %w", path, err))
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// Tag points dst at src with a symbolic link, replaced atomically.
func (s *Freezer) Tag(_ context.Context, src, dst string) error {
	from, err := s.Path(src)
	if err != nil {
		return err
	}
	to, err := s.Path(dst)
	if err != nil {
		return err
	}
	tmp := to + ".tmp-link"
	os.Remove(tmp)
	if err := os.Symlink(filepath.Base(from), tmp); err != nil {
		return fmt.Errorf("tagging %s as %s: %w", src, dst, err)
	}
	if err := os.Rename(tmp, to); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("tagging %s as %s: %w", src, dst, err)
	}
	return nil
}

// Remove removes ref's file (or link).
func (s *Freezer) Remove(_ context.Context, ref string) error {
	path, err := s.Path(ref)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing snapshot %s: %w", ref, err)
	}
	return nil
}

// Exists reports whether ref's file is there (through the link, for latest).
func (s *Freezer) Exists(_ context.Context, ref string) (bool, error) {
	path, err := s.Path(ref)
	if err != nil {
		return false, err
	}
	_, err = os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}
