package main

import (
	"context"
	"fmt"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/state"
)

func stopCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "stop",
		Usage:     "remove a bottle's containers and networks",
		ArgsUsage: "SLUG",
		Description: "Removes the bottle's containers and networks; a stopped bottle is stopped again\n" +
			"without error. Its state (plan, routes, CA, audit log, committed images' records) is kept\n" +
			"for 'bb-launch resume' unless --rm.\n\n" +
			cli.Examples("bb-launch stop demo-x1y2", "bb-launch stop --rm demo-x1y2"),
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "rm", Usage: "also remove the bottle's state folder"},
		},
		Action: slugActionOf(false, func(c *ucli.Context, d *deps, slug string) error {
			return runStop(c.Context, d, stopOptions{Slug: slug, Remove: c.Bool("rm")})
		}),
	}
}

type stopOptions struct {
	Slug   string
	Remove bool
}

func runStop(ctx context.Context, d *deps, o stopOptions) error {
	if !d.store.Exists(o.Slug) {
		return stopOrphan(ctx, d, o.Slug)
	}
	b, _, err := d.bottleBackend(ctx, o.Slug)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := backend.StopLocked(ctx, b, d.store, o.Slug); err != nil {
		return err
	}
	if o.Remove {
		if err := d.store.Remove(o.Slug); err != nil {
			return cli.Backend(err)
		}
		fmt.Fprintf(d.Err, "bb-launch: bottle %s stopped and removed\n", o.Slug)
		return nil
	}
	fmt.Fprintf(d.Err, "bb-launch: bottle %s stopped; 'bb-launch resume %s' boots it again\n", o.Slug, o.Slug)
	return nil
}

// stopOrphan stops a bottle whose state is gone (removed by hand, another
// state folder, a launch that lost it): what any backend still has of it
// is found by its labels. No lock: it would make a folder for a bottle that
// has none. A slug no backend knows anything of is no bottle (exit 2), as
// when no backend can be asked.
func stopOrphan(ctx context.Context, d *deps, slug string) error {
	missing := cli.Usage(&state.NotFoundError{Slug: slug, Dir: d.store.Dir}, lsHint)
	found := false
	for _, name := range backend.Names() {
		b, err := d.backend(ctx, name)
		if err != nil {
			continue
		}
		defer b.Close()
		s, err := b.Status(ctx, slug)
		if err != nil {
			return err
		}
		if !s.Leftovers {
			continue
		}
		if !found {
			fmt.Fprintf(d.Err, "bb-launch: warning: bottle %s has no state in %s; removing its containers and networks by their labels\n",
				slug, d.store.Dir)
		}
		found = true
		if err := b.Stop(ctx, slug); err != nil {
			return fmt.Errorf("stopping bottle %s: %w", slug, err)
		}
	}
	if !found {
		return missing
	}
	return nil
}
