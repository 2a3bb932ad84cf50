package docker

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/names"
)

// Leftovers reports whether the engine has any container or network of the
// bottle, and whether its agent runs.
func Leftovers(ctx context.Context, api Engine, slug string) (any, agentRunning bool, err error) {
	cs, err := bottleContainers(ctx, api, slug, "")
	if err != nil {
		return false, false, err
	}
	for _, c := range cs {
		if c.Labels[names.LabelRole] == names.RoleAgent && (c.State == "running" || c.State == "paused") {
			agentRunning = true
		}
	}
	ns, err := bottleNetworks(ctx, api, slug)
	if err != nil {
		return false, false, err
	}
	return len(cs) > 0 || len(ns) > 0, agentRunning, nil
}

// ImageExists reports whether the engine has the image ref.
func ImageExists(ctx context.Context, api Engine, ref string) (bool, error) {
	ok, _, err := imageExists(ctx, api, ref)
	return ok, err
}

// Restart starts a bottle's stopped agent container again, with what its
// filesystem holds (a resume from a snapshot would lose all of it since the
// snapshot): its sidecar is started too if it stopped, and the agent's
// /etc/hosts follows the sidecar's address. Of o it uses Plan, Store,
// Attach, ReadyTimeout and Progress. A failure removes nothing: the
// container is the person's work. A bottle without both containers cannot
// restart (exit.Usage, with the --discard hint).
func Restart(ctx context.Context, api Engine, o backend.LaunchOptions) (rec *backend.Record, err error) {
	p := o.Plan
	if err := backend.CheckPlan(p, names.Docker); err != nil {
		return nil, err
	}
	if err := checkPlan(p); err != nil {
		return nil, err
	}
	l := &launch{Launching: &backend.Launching{LaunchOptions: o}, api: api, d: p.Docker}
	unlock, err := o.Store.Lock(ctx, p.Slug)
	if err != nil {
		return nil, err
	}
	defer unlock()
	agent, agentRunning, err := FindContainer(ctx, api, p.Slug, names.RoleAgent)
	if err != nil {
		return nil, err
	}
	sidecar, sidecarRunning, err := FindContainer(ctx, api, p.Slug, names.RoleEgress)
	if err != nil {
		return nil, err
	}
	switch {
	case agent == "":
		return nil, exit.Usagef("bottle %s has no agent container to restart", p.Slug)
	case agentRunning:
		return nil, exit.Usagef("bottle %s is running", p.Slug)
	case sidecar == "":
		return nil, exit.Usage(fmt.Errorf("bottle %s's agent container is stopped, but its sidecar is gone", p.Slug),
			fmt.Sprintf("'bb-launch resume --discard %s' removes the container, and what it holds beyond its newest snapshot, and boots the snapshot", p.Slug))
	}
	l.agentID, l.sidecarID = agent, sidecar
	defer func() {
		if err != nil && l.session != nil {
			l.session.Close()
		}
	}()
	// The agent's command waits for bb.egress in its hosts file when it
	// was made to (waitCommand): then the two start together, and the
	// sidecar's name goes in once it answers. Until then it names none:
	// the address of the last run may be another's now.
	in, err := api.ContainerInspect(ctx, agent, client.ContainerInspectOptions{})
	if err != nil {
		return nil, exit.Backend(fmt.Errorf("inspecting container %s: %w", l.d.AgentContainer, err))
	}
	l.waits = in.Container.Config != nil && len(in.Container.Config.Cmd) > 3 && in.Container.Config.Cmd[3] == "bb-wait"
	if err := l.writeHosts(""); err != nil {
		return nil, err
	}
	l.sidecarDone = make(chan struct{})
	agentErr := make(chan error, 1)
	go func() { agentErr <- l.startAgent(ctx) }()
	func() {
		defer close(l.sidecarDone)
		if !sidecarRunning {
			if _, serr := api.ContainerStart(ctx, sidecar, client.ContainerStartOptions{}); serr != nil {
				err = &backend.StepError{Step: "starting the sidecar", Err: exit.Backend(fmt.Errorf("starting container %s: %w", l.d.SidecarContainer, serr))}
				return
			}
			timeout := cmp.Or(o.ReadyTimeout, 20*time.Second)
			if serr := waitReady(ctx, api, sidecar, timeout); serr != nil {
				err = &backend.StepError{Step: "starting the sidecar", Err: serr}
				return
			}
		}
		if serr := l.sidecarAddress(ctx); serr != nil {
			err = &backend.StepError{Step: "starting the sidecar", Err: serr}
			return
		}
		if serr := l.writeHosts(l.sidecarIP); serr != nil {
			err = &backend.StepError{Step: "starting the sidecar", Err: serr}
			return
		}
		l.sidecarOK = true
	}()
	aerr := <-agentErr
	if err != nil {
		if l.waits && aerr == nil {
			// Started, waiting for a sidecar that will not come.
			api.ContainerKill(context.WithoutCancel(ctx), agent, client.ContainerKillOptions{Signal: "KILL"}) //nolint:errcheck
		}
		return nil, err
	}
	if aerr != nil {
		return nil, &backend.StepError{Step: "starting the agent", Err: aerr}
	}
	rec = &backend.Record{Slug: p.Slug, Backend: names.Docker, AgentContainer: l.d.AgentContainer,
		SidecarContainer: l.d.SidecarContainer, AgentID: agent}
	if l.session != nil {
		rec.Session = l.session
	}
	for _, c := range []struct {
		id  string
		ref *string
	}{{agent, &rec.AgentImage}, {sidecar, &rec.SidecarImage}} {
		if in, err := api.ContainerInspect(ctx, c.id, client.ContainerInspectOptions{}); err == nil && in.Container.Config != nil {
			*c.ref = in.Container.Config.Image
		}
	}
	return rec, nil
}
