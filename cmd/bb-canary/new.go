package main

import (
	"context"
	"fmt"

	"github.com/bb-bottles/bb/lib/canary"
	"github.com/bb-bottles/bb/lib/cli"
	ucli "github.com/urfave/cli/v2"
)

type newOptions struct{}

func newCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "new",
		Usage:     "print a fresh canary",
		ArgsUsage: " ",
		Description: "Prints 32 random bytes as base64url without padding (43 characters) and a newline.\n\n" +
			cli.Examples(
				"bb-canary new",
				"export EGRESS_TOKEN_CANARY=$(bb-canary new)",
			),
		Action: func(c *ucli.Context) error {
			if c.NArg() > 0 {
				return cli.Usagef("new takes no arguments, got %q", c.Args().Slice())
			}
			return runNew(c.Context, cli.StreamsOf(c), newOptions{})
		},
	}
}

func runNew(_ context.Context, s cli.Streams, _ newOptions) error {
	c, err := canary.New()
	if err != nil {
		return fmt.Errorf("minting a canary: %w", err)
	}
	_, err = fmt.Fprintln(s.Out, c)
	return err
}
