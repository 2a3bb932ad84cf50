package main

import (
	"context"
	"errors"
	"fmt"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/backend/docker"
	"github.com/bb-bottles/bb/lib/cli"
)

func reloadCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "reload",
		Usage:     "make a bottle's sidecar re-read its routes now",
		ArgsUsage: "SLUG",
		Description: "Sends the sidecar SIGHUP: it re-reads routes.yaml, and keeps the routes in force if\n" +
			"the file is invalid. bb-egress apply calls this. Exits 1 when the bottle's sidecar is not\n" +
			"running (it reads the file when it starts).\n\n" +
			cli.Examples("bb-launch reload demo-x1y2"),
		Action: slugAction(func(c *ucli.Context, d *deps, slug string) error {
			return runReload(c.Context, d, slug)
		}),
	}
}

func runReload(ctx context.Context, d *deps, slug string) error {
	api, err := d.engine(ctx)
	if err != nil {
		return err
	}
	defer api.Close()
	var nr *docker.ErrNotRunning
	if err := docker.Reload(ctx, api, slug); errors.As(err, &nr) {
		return cli.Negative(fmt.Errorf("%w; it reads its routes when it starts", err))
	} else if err != nil {
		return err
	}
	fmt.Fprintf(d.Err, "bb-launch: the sidecar of bottle %s is reloading its routes\n", slug)
	return nil
}
