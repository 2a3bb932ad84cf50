package macoscontainer

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/freeze"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/plan"
)

// snapshotDockerfile rebuilds an exported filesystem as an image: the CLI
// has no commit and no import, and ADD unpacks a local tar. An export
// holds the filesystem only: the image's user, environment and command are
// those bb-launch gives a bottle anyway.
const snapshotDockerfile = "FROM scratch\nADD rootfs.tar /\n"

// Freezer snapshots bottles with `container export` and `container
// build`. From 1.2.1 (apple/container #1630) a running container exports
// as it runs; before, the agent is stopped for the export and started
// again, which NeedsStop says so that a person is asked first.
type Freezer struct {
	b *Backend
	// TempDir holds the export while the image is built (os.TempDir() when
	// empty); it needs room for the agent's whole filesystem.
	TempDir string
}

// Backend is "macos-container".
func (f *Freezer) Backend() string { return names.MacOSContainer }

// NeedsStop says whether the installed release exports only stopped
// containers (older than LiveExportVersion); when it cannot be asked,
// it is taken to, so that a person is asked rather than surprised.
func (f *Freezer) NeedsStop() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	vs, err := f.b.check(ctx)
	return err != nil || vs.CLI.Less(LiveExportVersion)
}

// Running lists the slugs of bottles whose agent runs.
func (f *Freezer) Running(ctx context.Context) ([]string, error) {
	out, err := f.b.tool.Output(ctx, "list", "--format", "json")
	if err != nil {
		return nil, exit.Backend(fmt.Errorf("listing running bottles: %w", err))
	}
	cs, err := DecodeContainers(out)
	if err != nil {
		return nil, exit.Backend(err)
	}
	var slugs []string
	for _, c := range cs {
		l := c.Labels
		if c.Running() && l[names.LabelRole] == names.RoleAgent && l[names.LabelSlug] != "" && !slices.Contains(slugs, l[names.LabelSlug]) {
			slugs = append(slugs, l[names.LabelSlug])
		}
	}
	slices.Sort(slugs)
	return slugs, nil
}

// Commit exports t.Container's filesystem and builds t.Ref from it. On a
// release that exports only stopped containers it stops the agent first and
// starts it again after, also when a step failed: the person agreed to a
// stop, not to losing the bottle.
func (f *Freezer) Commit(ctx context.Context, t freeze.Target) (id string, err error) {
	vs, err := f.b.check(ctx)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(f.TempDir, "bb-freeze-")
	if err != nil {
		return "", fmt.Errorf("committing bottle %s: %w", t.Slug, err)
	}
	defer os.RemoveAll(dir)
	if vs.CLI.Less(LiveExportVersion) {
		if stopped, err := f.b.stopped(ctx, t.Container); err != nil || !stopped {
			if _, err := f.b.tool.Output(ctx, "stop", t.Container); err != nil {
				return "", exit.Backend(fmt.Errorf("stopping bottle %s: %w", t.Slug, err))
			}
			defer func() {
				freeze.Undo(ctx, func(ctx context.Context) error {
					if serr := f.restart(ctx, t); serr != nil && err == nil {
						err = exit.Backend(fmt.Errorf("starting bottle %s again after its snapshot: %w", t.Slug, serr),
							"the snapshot "+t.Ref+" was made; 'bb-launch resume "+t.Slug+"' starts the bottle")
					}
					return nil
				})
			}()
		}
	}
	tar := filepath.Join(dir, "rootfs.tar")
	if _, err := f.b.tool.Output(ctx, "export", "--output", tar, t.Container); err != nil {
		return "", exit.Backend(fmt.Errorf("exporting bottle %s: %w", t.Slug, err))
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(snapshotDockerfile), 0o600); err != nil {
		return "", fmt.Errorf("committing bottle %s: %w", t.Slug, err)
	}
	labels := maps.Clone(t.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, f.b.Labels)
	labels[names.LabelSlug] = t.Slug
	labels[names.LabelRole] = names.RoleSnapshot
	if _, err := f.b.tool.Output(ctx, buildArgs(filepath.Join(dir, "Dockerfile"), t.Ref, nil, labels, dir)...); err != nil {
		return "", exit.Backend(fmt.Errorf("building snapshot %s: %w", t.Ref, err))
	}
	im, err := f.b.images().find(ctx, t.Ref)
	if err != nil {
		return "", exit.Backend(err)
	}
	if im == nil {
		return "", exit.Backend(fmt.Errorf("building snapshot %s: the CLI lists no such image", t.Ref))
	}
	return im.Digest, nil
}

// restart starts the stopped agent again, detached: its init must not wait
// for a person to attach.
func (f *Freezer) restart(ctx context.Context, t freeze.Target) error {
	if f.b.store != nil {
		if raw, err := f.b.store.ReadPlan(t.Slug); err == nil {
			var p plan.Plan
			if jsonUnmarshal(raw, &p) == nil {
				if err := prepareGuest(f.b.store, &p, "", false, "", nil); err != nil {
					return err
				}
			}
		}
	}
	return startAgent(ctx, f.b, t.Container, 0)
}

// Tag is `container image tag SRC DST`.
func (f *Freezer) Tag(ctx context.Context, src, dst string) error {
	if _, err := f.b.tool.Output(ctx, "image", "tag", src, dst); err != nil {
		return exit.Backend(fmt.Errorf("tagging %s as %s: %w", src, dst, err))
	}
	return nil
}

// Remove is `container image delete REF`, when the CLI lists ref.
func (f *Freezer) Remove(ctx context.Context, ref string) error {
	if err := f.b.images().remove(ctx, ref); err != nil {
		return exit.Backend(err)
	}
	return nil
}

// Exists reports whether the CLI lists ref.
func (f *Freezer) Exists(ctx context.Context, ref string) (bool, error) {
	return f.b.ImageExists(ctx, ref)
}
