package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/workspace"
)

var (
	_ backend.GitExporter = (*Backend)(nil)
	_ backend.Remover     = (*Backend)(nil)
)

// ExportGit bundles the branches of the bottle's own repository in a
// container of its own: the agent's image, as the agent's user, with no
// network, the repository (and the person's .git it borrows objects from)
// read-only. The bundle is what it prints; git's own messages are quoted
// in an error only.
func (b *Backend) ExportGit(ctx context.Context, o backend.GitExport, w io.Writer) (err error) {
	vol := names.GitVolume(o.Slug)
	if _, err := b.api.VolumeInspect(ctx, vol, client.VolumeInspectOptions{}); err != nil {
		if isNotFound(err) {
			return exit.Usage(fmt.Errorf("bottle %s: %w", o.Slug, backend.ErrNoAgentRepo))
		}
		return exit.Backend(fmt.Errorf("looking for %s: %w", vol, err))
	}
	image := o.Image
	if id, _, err := FindContainer(ctx, b.api, o.Slug, names.RoleAgent); err == nil && id != "" {
		if in, err := b.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{}); err == nil && in.Container.Config != nil {
			image = in.Container.Config.Image
		}
	}
	if image == "" {
		return exit.Usagef("bottle %s has no image to run git in: resume it first", o.Slug)
	}
	const repo = "/bb/git/agent"
	// An empty bundle is refused by git; nothing to send is no error.
	script := `git --git-dir=` + repo + ` rev-parse -q --verify HEAD >/dev/null 2>&1 || git --git-dir=` + repo +
		` for-each-ref --count=1 refs/heads | grep -q . || exit 0
out=$(git --git-dir=` + repo + ` bundle create /tmp/agent.bundle --branches "$@" 2>&1) || {
	case $out in *"empty bundle"*) exit 0 ;; esac
	printf '%s\n' "$out" >&2; exit 1; }
cat /tmp/agent.bundle`
	cmd := append([]string{"sh", "-c", script, "bb-export"}, notArgs(o.Exclude)...)
	mounts := []mount.Mount{{Type: mount.TypeVolume, Source: vol, Target: repo, ReadOnly: true,
		VolumeOptions: &mount.VolumeOptions{NoCopy: true}}}
	if o.HostGit != "" {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: o.HostGit, Target: workspace.HostGitMount, ReadOnly: true})
	}
	no := false
	res, err := b.api.ContainerCreate(ctx, client.ContainerCreateOptions{
		Image: image,
		Config: &container.Config{Cmd: cmd, User: o.User, Entrypoint: []string{},
			Labels: withTestLabels(map[string]string{names.LabelSlug: o.Slug, names.LabelRole: names.RoleGit})},
		HostConfig: &container.HostConfig{NetworkMode: "none", Mounts: mounts, CapDrop: []string{"ALL"},
			SecurityOpt: []string{"no-new-privileges"}, Init: &no,
			Resources: resources(plan.Limits{Memory: "1g", PidsLimit: 256}, plan.AgentLimits)},
	})
	if err != nil {
		return exit.Backend(fmt.Errorf("making a container to bundle bottle %s's repository: %w", o.Slug, err))
	}
	defer removeContainer(context.WithoutCancel(ctx), b.api, res.ID) //nolint:errcheck // best effort
	at, err := b.api.ContainerAttach(ctx, res.ID, client.ContainerAttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return exit.Backend(fmt.Errorf("bundling bottle %s's repository: %w", o.Slug, err))
	}
	defer at.Close()
	wait := b.api.ContainerWait(ctx, res.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := b.api.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		return exit.Backend(fmt.Errorf("bundling bottle %s's repository: %w", o.Slug, err))
	}
	var stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(w, &limitedBuffer{&stderr, 4 << 10}, at.Reader); err != nil {
		return exit.Backend(fmt.Errorf("reading bottle %s's bundle: %w", o.Slug, err))
	}
	select {
	case r := <-wait.Result:
		if r.StatusCode != 0 {
			return exit.Backend(fmt.Errorf("git in bottle %s could not bundle its repository (exit %d): %s",
				o.Slug, r.StatusCode, strings.TrimSpace(stderr.String())))
		}
	case err := <-wait.Error:
		return exit.Backend(fmt.Errorf("bundling bottle %s's repository: %w", o.Slug, err))
	}
	return nil
}

// notArgs leaves commits out of a bundle: "--not" and their ids, which are
// hex, never options.
func notArgs(ids []string) []string {
	var out []string
	for _, id := range ids {
		if isHex(id) {
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return append([]string{"--not"}, out...)
}

func isHex(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// limitedBuffer keeps the first n bytes written to it.
type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// Remove removes what the engine keeps of a bottle beyond its containers
// and networks: its own git repository and its snapshot images.
func (b *Backend) Remove(ctx context.Context, slug string) error {
	var errs []error
	if _, err := b.api.VolumeRemove(ctx, names.GitVolume(slug), client.VolumeRemoveOptions{Force: true}); err != nil && !isNotFound(err) {
		errs = append(errs, exit.Backend(fmt.Errorf("removing bottle %s's git repository: %w", slug, err)))
	}
	f := client.Filters{}.Add("label", names.LabelSlug+"="+slug).Add("label", names.LabelRole+"="+names.RoleSnapshot)
	if im, err := b.api.ImageList(ctx, client.ImageListOptions{Filters: f}); err == nil {
		for _, i := range im.Items {
			if _, err := b.api.ImageRemove(ctx, i.ID, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil && !isNotFound(err) {
				errs = append(errs, exit.Backend(fmt.Errorf("removing bottle %s's snapshot %s: %w", slug, i.ID, err)))
			}
		}
	} else {
		errs = append(errs, exit.Backend(fmt.Errorf("listing bottle %s's snapshots: %w", slug, err)))
	}
	return errors.Join(errs...)
}
