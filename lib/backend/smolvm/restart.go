package smolvm

import (
	"context"
	"fmt"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/names"
)

// Restart starts a bottle's stopped agent machine again, with what its
// disks hold: its sidecar too if it stopped (with its tokens, read again:
// smolvm keeps only references to them), then the agent's command under
// its holder, once the sidecar answers. Provisioning is not repeated: the
// files it wrote are on the machine's disks. Of o it uses Plan, Store, Env,
// Attach, ReadyTimeout and Progress. A failure removes nothing: the machine
// is the person's work.
func (b *Backend) Restart(ctx context.Context, o backend.LaunchOptions) (rec *backend.Record, err error) {
	p := o.Plan
	if err := backend.CheckPlan(p, names.Smolvm); err != nil {
		return nil, err
	}
	if err := checkPlan(p); err != nil {
		return nil, err
	}
	t, err := b.forPlan(p)
	if err != nil {
		return nil, err
	}
	unlock, err := o.Store.Lock(ctx, p.Slug)
	if err != nil {
		return nil, err
	}
	defer unlock()
	ms, err := t.machines(ctx)
	if err != nil {
		return nil, err
	}
	bt := bottleOf(ms, p.Slug)
	switch {
	case bt.agent == nil:
		return nil, exit.Usagef("bottle %s has no agent machine to restart", p.Slug)
	case bt.agent.running():
		return nil, exit.Usagef("bottle %s is running", p.Slug)
	case bt.sidecar == nil:
		return nil, exit.Usage(fmt.Errorf("bottle %s's agent machine is stopped, but its sidecar is gone", p.Slug),
			fmt.Sprintf("'bb-launch resume --discard %s' removes the machine, and what it holds beyond its newest snapshot, and boots the snapshot", p.Slug))
	}
	step := func(name string, err error) error {
		if err != nil {
			return &backend.StepError{Step: name, Err: err}
		}
		return nil
	}
	if !bt.sidecar.running() {
		env := o.Env
		if env == nil {
			env = func(string) string { return "" }
		}
		tokens, err := backend.TokenEnv(p, env)
		if err != nil {
			return nil, err
		}
		if err := step("starting the sidecar", t.run(ctx, tokens, "machine", "start", "--name", bt.sidecar.Name)); err != nil {
			return nil, err
		}
	}
	if err := step("starting the agent's VM", t.run(ctx, nil, "machine", "start", "--name", bt.agent.Name)); err != nil {
		return nil, err
	}
	if err := step("waiting for the sidecar", waitSidecar(ctx, t, p, o.ReadyTimeout)); err != nil {
		return nil, err
	}
	s, err := startHolder(ctx, t, p, o.Attach)
	if err := step("starting the agent", err); err != nil {
		return nil, err
	}
	rec = &backend.Record{Slug: p.Slug, Backend: names.Smolvm, AgentContainer: bt.agent.Name,
		SidecarContainer: bt.sidecar.Name, AgentID: bt.agent.Name}
	if bt.agent.Image != nil {
		rec.AgentImage = *bt.agent.Image
	}
	if bt.sidecar.Image != nil {
		rec.SidecarImage = *bt.sidecar.Image
	}
	if s != nil {
		rec.Session = s
	}
	return rec, nil
}
