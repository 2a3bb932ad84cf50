package macoscontainer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/workspace"
)

// agentRepo is where the bottle's own repository is in ExportGit's
// sandbox.
const agentRepo = "/bb/git/agent"

// ExportGit bundles the branches of the bottle's own repository in a
// container of its own (`container run --rm`): the agent's image, as the
// agent's user, with no network and no capability, the repository (and the
// person's .git it borrows objects from) read-only. The bundle is what it
// prints; git's own messages are quoted in an error only.
func (b *Backend) ExportGit(ctx context.Context, o backend.GitExport, w io.Writer) error {
	vol := names.GitVolume(o.Slug)
	vs, err := b.volumes(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, v := range vs {
		found = found || v.Name == vol
	}
	if !found {
		return exit.Usage(fmt.Errorf("bottle %s: %w", o.Slug, backend.ErrNoAgentRepo))
	}
	image := o.Image
	if cs, err := b.containers(ctx, o.Slug); err == nil {
		if a := role(cs, names.RoleAgent); a != nil && a.Image != "" {
			image = a.Image
		}
	}
	if image == "" {
		return exit.Usagef("bottle %s has no image to run git in: resume it first", o.Slug)
	}
	if _, err := b.check(ctx); err != nil {
		return err
	}
	var stderr bytes.Buffer
	_, err = b.tool.Run(ctx, Call{Args: exportArgs(o, image, b.Labels), Stdout: w, Stderr: &limited{&stderr, 4 << 10}})
	var te *ToolError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te):
		return exit.Backend(fmt.Errorf("git in bottle %s could not bundle its repository (exit %d): %s",
			o.Slug, te.Code, strings.TrimSpace(printable(stderr.String()))))
	}
	return exit.Backend(fmt.Errorf("bundling bottle %s's repository: %w", o.Slug, err))
}

// exportArgs is ExportGit's `container run`.
func exportArgs(o backend.GitExport, image string, labels map[string]string) []string {
	l := map[string]string{names.LabelSlug: o.Slug, names.LabelRole: names.RoleGit}
	for k, v := range labels {
		l[k] = v
	}
	args := append([]string{"run", "--rm"}, labelArgs(l)...)
	args = append(args, "--network", "none", "--no-dns", "--cap-drop", "ALL", "--user", o.User,
		"--cpus", "1", "--memory", "1024M", "--entrypoint", "/bin/sh",
		"--volume", mountSpec{Source: names.GitVolume(o.Slug), Target: agentRepo, ReadOnly: true, Volume: true}.volumeArg())
	if o.HostGit != "" {
		args = append(args, "--volume", mountSpec{Source: o.HostGit, Target: workspace.HostGitMount, ReadOnly: true}.volumeArg())
	}
	args = append(args, image, "-c", backend.GitBundleScript(agentRepo), "bb-export")
	return append(args, backend.NotArgs(o.Exclude)...)
}

// limited keeps the first n bytes written to it.
type limited struct {
	b *bytes.Buffer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
