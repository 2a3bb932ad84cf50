package backend

import (
	"context"
	"fmt"
	"io"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/state"
)

// Resume boots bottle md (o.Plan, its stored plan) again on b, by the
// resume policy: a running bottle is refused; a stopped agent that still
// exists is restarted with what it holds (unless discard, which removes it
// and boots a snapshot instead); otherwise the bottle boots from its newest
// snapshot the backend still has, else from the image its last launch
// built, else from its Dockerfile — with the base image, build arguments
// and --allow-private of the last launch, where o does not say otherwise.
// What it chose is said on o.Progress.
func Resume(ctx context.Context, b Backend, o LaunchOptions, md state.Metadata, discard bool) (*Record, error) {
	slug := md.Slug
	say := func(format string, a ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "bb-launch: "+format+"\n", a...)
		}
	}
	st, err := b.Status(ctx, slug)
	if err != nil {
		return nil, err
	}
	if st.Agent == StatusRunning {
		return nil, exit.Usage(fmt.Errorf("bottle %s is running", slug),
			fmt.Sprintf("join it with 'bb-launch attach %s', or stop it first with 'bb-launch stop %s'", slug, slug))
	}
	o.Resume = true
	switch {
	case st.Agent == StatusStopped && !discard:
		r, ok := b.(Restarter)
		if !ok {
			return nil, Unsupported(b.Name(), "restart a stopped agent with what it holds",
				fmt.Sprintf("'bb-launch resume --discard %s' removes it, and what it holds beyond its newest snapshot, and boots the snapshot", slug))
		}
		// The engine binds the workspace again as it restarts the
		// container, following whatever its path leads to now: the folder
		// is checked as at any launch, and must still be the first one.
		lo := o
		if lo.Progress == nil {
			lo.Progress = io.Discard
		}
		if lo.Env == nil {
			lo.Env = func(string) string { return "" }
		}
		l := &Launching{LaunchOptions: lo, backend: b}
		if err := l.checkWorkspace(ctx); err != nil {
			return nil, &StepError{Step: "checking the workspace", Err: err}
		}
		// Its filesystem holds work no snapshot has.
		say("restarting bottle %s's stopped agent container, with what it holds ('--discard' boots a snapshot instead)", slug)
		return r.Restart(ctx, o)
	case st.Agent == StatusStopped:
		say("discarding bottle %s's stopped agent container", slug)
	}
	if st.Leftovers {
		// What a crashed launcher or a dead agent left: cleared, the state stays.
		if err := StopLocked(ctx, b, o.Store, slug); err != nil {
			return nil, err
		}
	}
	image, err := newestSnapshot(ctx, b, md)
	if err != nil {
		return nil, err
	}
	last, err := ReadLaunched(o.Store, slug)
	if err != nil {
		return nil, exit.Usage(err)
	}
	o.Image = image
	if o.BaseImage == "" {
		o.BaseImage = last.BaseImage
	}
	// What the first launch allowed, a resume keeps.
	o.AllowPrivate = o.AllowPrivate || last.AllowPrivate
	args := map[string]string{}
	for k, v := range last.BuildArgs {
		args[k] = v
	}
	for k, v := range o.BuildArgs {
		args[k] = v
	}
	o.BuildArgs = args
	switch {
	case image != "":
		say("resuming bottle %s from its snapshot %s", slug, image)
	case last.AgentImage != "" && imageExists(ctx, b, last.AgentImage):
		o.Image = last.AgentImage
		why := "it has no snapshot"
		if len(md.Images) > 0 {
			why = "the engine has none of its snapshots"
		}
		say("resuming bottle %s from its image %s (%s)", slug, o.Image, why)
	case len(md.Images) > 0:
		say("the engine has none of bottle %s's snapshots (newest %s); rebuilding from the Dockerfile",
			slug, md.Images[len(md.Images)-1].Ref)
	default:
		say("bottle %s has no snapshot and its image is gone; rebuilding from the Dockerfile", slug)
	}
	return Launch(ctx, b, o)
}

// newestSnapshot returns the newest of a bottle's snapshots that its
// backend still has, or "" when it has none of them.
func newestSnapshot(ctx context.Context, b Backend, md state.Metadata) (string, error) {
	f, ok := b.(Freezable)
	if !ok {
		return "", nil
	}
	fr := f.Freezer()
	for i := len(md.Images) - 1; i >= 0; i-- {
		ok, err := fr.Exists(ctx, md.Images[i].Ref)
		if err != nil {
			return "", err
		}
		if ok {
			return md.Images[i].Ref, nil
		}
	}
	return "", nil
}

// imageExists reports whether b still has ref; a backend that cannot say,
// or fails to, has not.
func imageExists(ctx context.Context, b Backend, ref string) bool {
	ic, ok := b.(ImageChecker)
	if !ok {
		return false
	}
	ok, err := ic.ImageExists(ctx, ref)
	return err == nil && ok
}

// StopLocked removes a bottle's containers and networks under its lock.
func StopLocked(ctx context.Context, b Backend, st *state.Store, slug string) error {
	unlock, err := st.Lock(ctx, slug)
	if err != nil {
		return err
	}
	defer unlock()
	if err := b.Stop(ctx, slug); err != nil {
		return fmt.Errorf("stopping bottle %s: %w", slug, err)
	}
	return nil
}
