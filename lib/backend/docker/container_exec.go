package docker

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/names"
)

// Exec runs cmd in the bottle's running agent, as the agent's user, in its
// working folder and environment, with no input, and returns its exit
// status. Its output goes to stdout and stderr as it comes.
func Exec(ctx context.Context, api Engine, slug string, cmd []string, stdout, stderr io.Writer) (int, error) {
	id, running, err := FindContainer(ctx, api, slug, names.RoleAgent)
	if err != nil {
		return 0, err
	}
	if !running {
		return 0, exit.Usage(&backend.NotRunningError{Slug: slug}, "start it with 'bb-launch resume "+slug+"'")
	}
	in, err := api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return 0, exit.Backend(fmt.Errorf("inspecting the agent of bottle %s: %w", slug, err))
	}
	user := ""
	if in.Container.Config != nil {
		user = in.Container.Config.User
	}
	ex, err := api.ExecCreate(ctx, id, client.ExecCreateOptions{User: user, Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return 0, exit.Backend(fmt.Errorf("running %q in bottle %s: %w", cmd, slug, err))
	}
	at, err := api.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		return 0, exit.Backend(fmt.Errorf("running %q in bottle %s: %w", cmd, slug, err))
	}
	defer at.Close()
	if _, err := stdcopy.StdCopy(stdout, stderr, at.Reader); err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, exit.Backend(fmt.Errorf("reading the output of %q in bottle %s: %w", cmd, slug, err))
	}
	// The output ends a moment before the engine records the status.
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		res, err := api.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
		if err != nil {
			return 0, exit.Backend(fmt.Errorf("inspecting %q in bottle %s: %w", cmd, slug, err))
		}
		if !res.Running {
			return res.ExitCode, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(wait):
		}
	}
}
