package docker

import (
	"context"

	"github.com/bb-bottles/bb/lib/state"
)

// ResumeImage returns the newest of a bottle's committed images that the
// engine still has, or "" when it has none of them.
func ResumeImage(ctx context.Context, api Engine, md state.Metadata) (string, error) {
	for i := len(md.Images) - 1; i >= 0; i-- {
		im := md.Images[i]
		ok, _, err := imageExists(ctx, api, im.Ref)
		if err != nil {
			return "", err
		}
		if ok {
			return im.Ref, nil
		}
	}
	return "", nil
}

// Leftovers reports whether the engine has any container or network of the
// bottle, and whether its agent runs.
func Leftovers(ctx context.Context, api Engine, slug string) (any, agentRunning bool, err error) {
	cs, err := bottleContainers(ctx, api, slug, "")
	if err != nil {
		return false, false, err
	}
	for _, c := range cs {
		if c.Labels[LabelRole] == RoleAgent && (c.State == "running" || c.State == "paused") {
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
