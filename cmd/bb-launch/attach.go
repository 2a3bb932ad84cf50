package main

import (
	"context"
	"errors"
	"fmt"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/backend/docker"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/terminal"
)

func attachCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "attach",
		Usage:     "attach the terminal to a running bottle's agent",
		ArgsUsage: "SLUG",
		Description: "Joins the terminal (/dev/tty) to the agent. Ctrl-P Ctrl-Q leaves it running; when\n" +
			"the agent exits the bottle stops (unless preserved) and its exit status is passed through.\n\n" +
			cli.Examples("bb-launch attach demo-x1y2"),
		Action: slugAction(func(c *ucli.Context, d *deps, slug string) error {
			return runAttach(c.Context, d, slug)
		}),
	}
}

func runAttach(ctx context.Context, d *deps, slug string) error {
	term, err := terminal.Open()
	if errors.Is(err, terminal.ErrNoTerminal) {
		return cli.Usage(fmt.Errorf("attaching to bottle %s: %w", slug, err),
			"run it from a terminal, or use 'bb-launch exec "+slug+" -- CMD' from scripts")
	}
	if err != nil {
		return cli.Usage(err)
	}
	defer term.Close()
	api, err := d.engine(ctx)
	if err != nil {
		return err
	}
	defer api.Close()
	id, running, err := docker.FindContainer(ctx, api, slug, docker.RoleAgent)
	if err != nil {
		return err
	}
	if !running {
		return cli.Usage(&docker.ErrNotRunning{Slug: slug}, "start it with 'bb-launch resume "+slug+"'")
	}
	s, err := docker.OpenAttach(ctx, api, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.Err, "bb-launch: attached to bottle %s (Ctrl-P Ctrl-Q leaves it running)\n", slug)
	return attached(ctx, d, api, s, term, slug)
}
