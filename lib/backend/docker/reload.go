package docker

import (
	"context"
	"fmt"

	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/names"
)

// Reload asks the bottle's sidecar to re-read its routes file now (SIGHUP).
// A bottle whose sidecar is not running gives a *backend.NotRunningError: it reads the
// file when it starts.
func Reload(ctx context.Context, api Engine, slug string) error {
	id, running, err := FindContainer(ctx, api, slug, names.RoleEgress)
	if err != nil {
		return err
	}
	if !running {
		return &backend.NotRunningError{Slug: slug, Role: names.RoleEgress}
	}
	if _, err := api.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "HUP"}); err != nil {
		return exit.Backend(fmt.Errorf("signalling the sidecar of bottle %s: %w", slug, err))
	}
	return nil
}
