package main

import (
	"context"
	"errors"
	"fmt"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/cli"
)

func reloadCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "reload",
		Usage:     "make a bottle's sidecar re-read its routes now",
		ArgsUsage: "SLUG",
		Description: "Sends the sidecar SIGHUP: it re-reads routes.yaml, and keeps the routes in force if\n" +
			"the file is invalid. bb-egress apply calls this. Exits 1 when the bottle's sidecar is not\n" +
			"running (it reads the file when it starts), or its backend cannot signal it (it watches the file).\n\n" +
			cli.Examples("bb-launch reload demo-x1y2"),
		Action: slugAction(func(c *ucli.Context, d *deps, slug string) error {
			return runReload(c.Context, d, slug)
		}),
	}
}

func runReload(ctx context.Context, d *deps, slug string) error {
	b, _, err := d.bottleBackend(ctx, slug)
	if err != nil {
		return err
	}
	defer b.Close()
	r, ok := b.(backend.Reloader)
	if !ok {
		// Not an error: the sidecar watches the file.
		return cli.Negative(fmt.Errorf("bottle %s runs on %s, which cannot signal its sidecar; it picks the change up by watching the file",
			slug, b.Name()))
	}
	if err := r.Reload(ctx, slug); errors.Is(err, backend.ErrNotRunning) {
		return cli.Negative(fmt.Errorf("%w; it reads its routes when it starts", err))
	} else if err != nil {
		return err
	}
	fmt.Fprintf(d.Err, "bb-launch: the sidecar of bottle %s is reloading its routes\n", slug)
	return nil
}
