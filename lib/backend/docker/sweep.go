package docker

import (
	"context"
	"fmt"

	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/exit"
)

// RemoveLabelled removes every container, network and image labelled
// key=value, containers first so that nothing holds the rest. Test binaries
// sweep what they made with it, by a label only their run carries.
func RemoveLabelled(ctx context.Context, c *client.Client, key, value string) error {
	f := client.Filters{}.Add("label", key+"="+value)
	cs, err := c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return exit.Backend(fmt.Errorf("listing containers labelled %s=%s: %w", key, value, err))
	}
	for _, ct := range cs.Items {
		if _, err := c.ContainerRemove(ctx, ct.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !isNotFound(err) {
			return exit.Backend(fmt.Errorf("removing container %s: %w", ct.ID, err))
		}
	}
	ns, err := c.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return exit.Backend(fmt.Errorf("listing networks labelled %s=%s: %w", key, value, err))
	}
	for _, n := range ns.Items {
		if _, err := c.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !isNotFound(err) {
			return exit.Backend(fmt.Errorf("removing network %s: %w", n.Name, err))
		}
	}
	// After the containers: a volume in use cannot go.
	vs, err := c.VolumeList(ctx, client.VolumeListOptions{Filters: f})
	if err != nil {
		return exit.Backend(fmt.Errorf("listing volumes labelled %s=%s: %w", key, value, err))
	}
	for _, v := range vs.Items {
		if _, err := c.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{Force: true}); err != nil && !isNotFound(err) {
			return exit.Backend(fmt.Errorf("removing volume %s: %w", v.Name, err))
		}
	}
	is, err := c.ImageList(ctx, client.ImageListOptions{All: true, Filters: f})
	if err != nil {
		return exit.Backend(fmt.Errorf("listing images labelled %s=%s: %w", key, value, err))
	}
	for _, im := range is.Items {
		_, err := c.ImageRemove(ctx, im.ID, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		if err != nil && !isNotFound(err) {
			return exit.Backend(fmt.Errorf("removing image %s: %w", im.ID, err))
		}
	}
	return nil
}
