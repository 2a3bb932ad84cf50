package docker

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/freeze"
	"github.com/bb-bottles/bb/lib/names"
)

// FreezerAPI is the part of the engine client the Docker freezer needs;
// *client.Client has it.
type FreezerAPI interface {
	ContainerList(ctx context.Context, opts client.ContainerListOptions) (client.ContainerListResult, error)
	ContainerCommit(ctx context.Context, container string, opts client.ContainerCommitOptions) (client.ContainerCommitResult, error)
	ImageTag(ctx context.Context, opts client.ImageTagOptions) (client.ImageTagResult, error)
	ImageRemove(ctx context.Context, ref string, opts client.ImageRemoveOptions) (client.ImageRemoveResult, error)
	ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (client.ImageInspectResult, error)
}

// Freezer freezes bottles on the Docker engine (freeze.Freezer). A commit
// does not stop the bottle: the engine pauses the container (freezes its
// cgroup), commits its filesystem and unpauses it.
type Freezer struct {
	API FreezerAPI
}

var _ freeze.Freezer = (*Freezer)(nil)

// Backend is "docker".
func (d *Freezer) Backend() string { return names.Docker }

// NeedsStop is false: the container is only paused, for the commit.
func (d *Freezer) NeedsStop() bool { return false }

// Running lists the slugs of running agent containers (bb.role=agent).
func (d *Freezer) Running(ctx context.Context) ([]string, error) {
	f := client.Filters{}.Add("label", names.LabelRole+"="+names.RoleAgent).Add("status", "running")
	res, err := d.API.ContainerList(ctx, client.ContainerListOptions{Filters: f})
	if err != nil {
		return nil, exit.Backend(fmt.Errorf("listing running bottles: %w", err))
	}
	var slugs []string
	for _, c := range res.Items {
		if s := c.Labels[names.LabelSlug]; s != "" && !slices.Contains(slugs, s) {
			slugs = append(slugs, s)
		}
	}
	slices.Sort(slugs)
	return slugs, nil
}

// Commit commits t.Container as t.Ref, labelled bb.slug and bb.role=snapshot
// besides the container's own labels.
//
// The pause is the engine's own (the commit's pause=true, its default)
// rather than separate pause and unpause calls: the engine unpauses in the
// same request, whatever happens to this process. A client-side pause
// would leave the agent frozen for good if bb-freeze were killed between
// its pause and its unpause — and cron does kill jobs. A container already
// paused by someone else is left paused, as the engine does.
//
// The engine finishes a commit whose client has gone, so the image is
// committed untagged and tagged t.Ref only once Commit has its ID: an
// interrupted commit leaves no tag behind, at worst an untagged image
// labelled with the bottle's slug.
func (d *Freezer) Commit(ctx context.Context, t freeze.Target) (string, error) {
	labels := maps.Clone(t.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[names.LabelSlug] = t.Slug
	labels[names.LabelRole] = names.RoleSnapshot
	res, err := d.API.ContainerCommit(ctx, t.Container, client.ContainerCommitOptions{
		Comment: "bb-freeze snapshot of bottle " + t.Slug,
		Changes: []string{labelChange(labels)},
	})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return "", exit.Backend(fmt.Errorf("committing bottle %s: no container %s: %w", t.Slug, t.Container, err),
				"is the bottle running? bb-launch ls lists them")
		}
		return "", exit.Backend(fmt.Errorf("committing container %s: %w", t.Container, err))
	}
	if err := d.Tag(ctx, res.ID, t.Ref); err != nil {
		freeze.Undo(ctx, func(ctx context.Context) error { return d.Remove(ctx, res.ID) })
		return "", err
	}
	return res.ID, nil
}

// labelChange is one Dockerfile LABEL instruction setting labels, in a
// stable order, values double-quoted.
func labelChange(labels map[string]string) string {
	var b strings.Builder
	b.WriteString("LABEL")
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		v := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(labels[k])
		fmt.Fprintf(&b, " %s=\"%s\"", k, v)
	}
	return b.String()
}

// Tag points dst at src.
func (d *Freezer) Tag(ctx context.Context, src, dst string) error {
	if _, err := d.API.ImageTag(ctx, client.ImageTagOptions{Source: src, Target: dst}); err != nil {
		return exit.Backend(fmt.Errorf("tagging %s as %s: %w", src, dst, err))
	}
	return nil
}

// Remove removes the tag ref, and the image once no tag is left, unless a
// container uses it (then the engine refuses and so does Remove).
func (d *Freezer) Remove(ctx context.Context, ref string) error {
	_, err := d.API.ImageRemove(ctx, ref, client.ImageRemoveOptions{PruneChildren: true})
	if err == nil || cerrdefs.IsNotFound(err) {
		return nil
	}
	if cerrdefs.IsConflict(err) {
		return exit.Backend(fmt.Errorf("removing image %s: %w", ref, err),
			"a container still uses it: stop the bottle (bb-launch stop SLUG) and try again")
	}
	return exit.Backend(fmt.Errorf("removing image %s: %w", ref, err))
}

// Exists reports whether the engine has ref.
func (d *Freezer) Exists(ctx context.Context, ref string) (bool, error) {
	_, err := d.API.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, exit.Backend(fmt.Errorf("inspecting image %s: %w", ref, err))
	}
	return true, nil
}
