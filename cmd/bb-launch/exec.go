package main

import (
	"context"
	"errors"
	"fmt"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/cli"
)

func execCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "exec",
		Usage:     "run a command in a running bottle's agent, not interactive",
		ArgsUsage: "SLUG -- CMD [ARGS...]",
		Description: "Runs CMD in the agent as the agent's user, with its environment and working folder,\n" +
			"and no input. Its output is passed through and its exit status is bb-launch's. For\n" +
			"scripts and tests; 'bb-launch attach' is for people.\n\n" +
			cli.Examples("bb-launch exec demo-x1y2 -- git status", "bb-launch exec demo-x1y2 -- sh -c 'curl -sS https://example.com'"),
		SkipFlagParsing: true,
		Action: func(c *ucli.Context) error {
			args := c.Args().Slice()
			if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
				return ucli.ShowCommandHelp(c.Lineage()[1], c.Command.Name)
			}
			if len(args) == 0 {
				return usageErr(c, errors.New("missing the bottle's SLUG"))
			}
			slug, cmd := args[0], args[1:]
			if len(cmd) > 0 && cmd[0] == "--" {
				cmd = cmd[1:]
			}
			if len(cmd) == 0 {
				return usageErr(c, fmt.Errorf("missing the command to run in bottle %s", slug))
			}
			d, err := newDeps(c)
			if err != nil {
				return err
			}
			if err := d.bottle(slug); err != nil {
				return err
			}
			return runExec(c.Context, d, slug, cmd)
		},
	}
}

func runExec(ctx context.Context, d *deps, slug string, cmd []string) error {
	b, _, err := d.bottleBackend(ctx, slug)
	if err != nil {
		return err
	}
	defer b.Close()
	code, err := b.Exec(ctx, slug, cmd, d.Out, d.Err)
	if err != nil {
		return err
	}
	if code != 0 {
		return cli.Exit(code)
	}
	return nil
}
