package docker

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/names"
)

// InhibitIPv4 is the bridge driver's option that gives the bridge itself no
// IPv4 address on the host. An --internal network alone only drops
// forwarding: measured on Docker 20.10, a container on one still reached a
// service on the host through the bridge's gateway address (172.18.0.1,
// HTTP 200), because that address is the host's own. With the option the
// host has no address on the bridge, and the same request times out.
const InhibitIPv4 = "com.docker.network.bridge.inhibit_ipv4"

// networks creates the bottle's two networks: the internal one, which holds
// the agent and the sidecar and has no way out, and the egress one, the
// sidecar's alone. Neither has IPv6: the sidecar's rules are about IPv4
// routes and names, and an address family it does not watch is a way round.
func (l *launch) networks(ctx context.Context) error {
	no := false
	nets := []struct {
		name string
		opts client.NetworkCreateOptions
	}{
		{l.d.InternalNetwork, client.NetworkCreateOptions{Driver: "bridge", Internal: true, EnableIPv6: &no,
			Options: map[string]string{InhibitIPv4: "true"}}},
		{l.d.EgressNetwork, client.NetworkCreateOptions{Driver: "bridge", EnableIPv6: &no}},
	}
	ids := make([]string, len(nets))
	errs := make([]error, len(nets))
	var wg sync.WaitGroup
	for i, n := range nets {
		wg.Go(func() { ids[i], errs[i] = l.network(ctx, n.name, n.opts) })
	}
	// The engine's CPU count and storage, for the agent's limits, while
	// it is at it.
	wg.Go(func() {
		if info, err := l.api.Info(ctx, client.InfoOptions{}); err == nil {
			l.ncpu = info.Info.NCPU
			l.storage = storageOf(info.Info.Driver, info.Info.DriverStatus)
		}
	})
	wg.Wait()
	for _, id := range ids {
		if id != "" {
			l.networkIDs = append(l.networkIDs, id)
		}
	}
	return errors.Join(errs...)
}

func (l *launch) network(ctx context.Context, name string, opts client.NetworkCreateOptions) (string, error) {
	// The engine (before API 1.44) lets two networks share a name unless
	// asked not to, and this client never asks: refuse a clash here, or
	// the bottle could join someone else's network.
	if _, err := l.api.NetworkInspect(ctx, name, client.NetworkInspectOptions{}); err == nil {
		return "", exit.Backend(fmt.Errorf("a network named %s already exists", name),
			fmt.Sprintf("is bottle %s running? 'bb-launch stop %s' removes its containers and networks", l.Plan.Slug, l.Plan.Slug))
	} else if !isNotFound(err) {
		return "", exit.Backend(fmt.Errorf("inspecting network %s: %w", name, err))
	}
	opts.Labels = l.labels(l.d.Labels)
	res, err := l.api.NetworkCreate(ctx, name, opts)
	if err != nil {
		return "", exit.Backend(fmt.Errorf("creating network %s: %w", name, err))
	}
	return res.ID, nil
}

// removeNetwork removes a network; one already gone is no error.
func removeNetwork(ctx context.Context, api Engine, id string) error {
	if _, err := api.NetworkRemove(ctx, id, client.NetworkRemoveOptions{}); err != nil && !isNotFound(err) {
		return exit.Backend(fmt.Errorf("removing network %s: %w", id, err))
	}
	return nil
}

// bottleNetworks lists the networks labelled with slug.
func bottleNetworks(ctx context.Context, api Engine, slug string) ([]string, error) {
	res, err := api.NetworkList(ctx, client.NetworkListOptions{Filters: client.Filters{}.Add("label", names.LabelSlug+"="+slug)})
	if err != nil {
		return nil, exit.Backend(fmt.Errorf("listing the networks of bottle %s: %w", slug, err))
	}
	var ids []string
	for _, n := range res.Items {
		ids = append(ids, n.ID)
	}
	return ids, nil
}
