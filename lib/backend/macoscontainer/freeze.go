package macoscontainer

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/freeze"
	"github.com/bb-bottles/bb/lib/names"
)

// Freezer freezes bottles on Apple's container CLI (github.com/apple/container).
//
// Command lines follow docs/command-reference.md of apple/container, the
// 1.0.0-era reference that documents `container export` ("Exports a stopped
// container's filesystem as a tar archive. The container must be stopped
// before exporting", `container export [-o <output>] <container-id>`).
// That reference has no `container commit` and no `container image
// import`, so the image is rebuilt with the documented `container build`
// from a Dockerfile that ADDs the exported tar to an empty image (ADD
// unpacks a local tar). An export holds the filesystem only: the image's
// user, environment and command are those bb-launch gives a bottle anyway.
type Freezer struct {
	Run freeze.Runner
	// Tool is the CLI's name or path ("container" when empty).
	Tool string
	// TempDir holds the export while the image is built (os.TempDir()
	// when empty); it needs room for the whole filesystem.
	TempDir string
}

// Backend is "macos-container".
func (a *Freezer) Backend() string { return names.MacOSContainer }

// NeedsStop is true: only a stopped container can be exported.
func (a *Freezer) NeedsStop() bool { return true }

func (a *Freezer) tool() string {
	if a.Tool == "" {
		return "container"
	}
	return a.Tool
}

func (a *Freezer) run(ctx context.Context, args ...string) ([]byte, error) {
	return a.Run.Run(ctx, a.tool(), args...)
}

// appleContainer is the part of one element of `container list --format
// json` that Running reads.
type appleContainer struct {
	Status        string `json:"status"`
	Configuration struct {
		ID     string            `json:"id"`
		Labels map[string]string `json:"labels"`
	} `json:"configuration"`
}

// Running lists the slugs of running agent containers, from `container
// list --format json` (running containers only, without --all).
func (a *Freezer) Running(ctx context.Context) ([]string, error) {
	out, err := a.run(ctx, "list", "--format", "json")
	if err != nil {
		return nil, exit.Backend(fmt.Errorf("listing running bottles: %w", err))
	}
	var cs []appleContainer
	if err := json.Unmarshal(out, &cs); err != nil {
		return nil, exit.Backend(fmt.Errorf("listing running bottles: reading container list: %w", err))
	}
	var slugs []string
	for _, c := range cs {
		l := c.Configuration.Labels
		if c.Status == "running" && l[names.LabelRole] == names.RoleAgent && l[names.LabelSlug] != "" && !slices.Contains(slugs, l[names.LabelSlug]) {
			slugs = append(slugs, l[names.LabelSlug])
		}
	}
	slices.Sort(slugs)
	return slugs, nil
}

// Commit stops the container, exports its filesystem, builds t.Ref from the
// export and starts the container again — also when a step failed, since
// the person agreed to a stop, not to losing the bottle.
func (a *Freezer) Commit(ctx context.Context, t freeze.Target) (id string, err error) {
	dir, err := os.MkdirTemp(a.TempDir, "bb-freeze-")
	if err != nil {
		return "", fmt.Errorf("committing bottle %s: %w", t.Slug, err)
	}
	defer os.RemoveAll(dir)
	if _, err := a.run(ctx, "stop", t.Container); err != nil {
		return "", exit.Backend(fmt.Errorf("stopping bottle %s: %w", t.Slug, err))
	}
	defer func() {
		freeze.Undo(ctx, func(ctx context.Context) error {
			if _, serr := a.run(ctx, "start", t.Container); serr != nil && err == nil {
				err = exit.Backend(fmt.Errorf("starting bottle %s again after its snapshot: %w", t.Slug, serr),
					"the snapshot "+t.Ref+" was made; start the bottle with: container start "+t.Container)
			}
			return nil
		})
	}()
	tar := filepath.Join(dir, "rootfs.tar")
	if _, err := a.run(ctx, "export", "-o", tar, t.Container); err != nil {
		return "", exit.Backend(fmt.Errorf("exporting bottle %s: %w", t.Slug, err))
	}
	dockerfile := filepath.Join(dir, "Dockerfile")
	if err := os.WriteFile(dockerfile, []byte("FROM scratch\nADD rootfs.tar /\n"), 0o600); err != nil {
		return "", fmt.Errorf("committing bottle %s: %w", t.Slug, err)
	}
	if _, err := a.run(ctx, a.buildArgs(t, dir)...); err != nil {
		return "", exit.Backend(fmt.Errorf("building snapshot %s: %w", t.Ref, err))
	}
	id, _, err = a.find(ctx, t.Ref)
	if err != nil {
		return "", err
	}
	return id, nil
}

// buildArgs is `container build -f DIR/Dockerfile -t REF --label K=V...
// --progress plain DIR`.
func (a *Freezer) buildArgs(t freeze.Target, dir string) []string {
	labels := maps.Clone(t.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[names.LabelSlug] = t.Slug
	labels[names.LabelRole] = names.RoleSnapshot
	args := []string{"build", "-f", filepath.Join(dir, "Dockerfile"), "-t", t.Ref}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		args = append(args, "--label", k+"="+labels[k])
	}
	return append(args, "--progress", "plain", dir)
}

// appleImage is the part of one element of `container image list --format
// json` that find reads.
type appleImage struct {
	Reference  string `json:"reference"`
	Descriptor struct {
		Digest string `json:"digest"`
	} `json:"descriptor"`
}

// find looks ref up in `container image list --format json` and returns its
// digest. The CLI may show a reference fully qualified
// (docker.io/bb/x:tag), so a match on the last path elements counts.
func (a *Freezer) find(ctx context.Context, ref string) (id string, ok bool, err error) {
	out, err := a.run(ctx, "image", "list", "--format", "json")
	if err != nil {
		return "", false, exit.Backend(fmt.Errorf("listing images: %w", err))
	}
	var ims []appleImage
	if err := json.Unmarshal(out, &ims); err != nil {
		return "", false, exit.Backend(fmt.Errorf("listing images: reading the image list: %w", err))
	}
	for _, im := range ims {
		if im.Reference == ref || strings.HasSuffix(im.Reference, "/"+ref) {
			return im.Descriptor.Digest, true, nil
		}
	}
	return "", false, nil
}

// Tag is `container image tag SRC DST`.
func (a *Freezer) Tag(ctx context.Context, src, dst string) error {
	if _, err := a.run(ctx, "image", "tag", src, dst); err != nil {
		return exit.Backend(fmt.Errorf("tagging %s as %s: %w", src, dst, err))
	}
	return nil
}

// Remove is `container image delete REF`, when the CLI lists ref.
func (a *Freezer) Remove(ctx context.Context, ref string) error {
	_, ok, err := a.find(ctx, ref)
	if err != nil || !ok {
		return err
	}
	if _, err := a.run(ctx, "image", "delete", ref); err != nil {
		return exit.Backend(fmt.Errorf("removing image %s: %w", ref, err))
	}
	return nil
}

// Exists reports whether `container image list` lists ref.
func (a *Freezer) Exists(ctx context.Context, ref string) (bool, error) {
	_, ok, err := a.find(ctx, ref)
	return ok, err
}
