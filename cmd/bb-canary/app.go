package main

import (
	"errors"
	"fmt"

	"github.com/bb-bottles/bb/lib/cli"
	ucli "github.com/urfave/cli/v2"
)

func newApp() *ucli.App {
	return &ucli.App{
		Name:  "bb-canary",
		Usage: "mint canaries, scan text for known secrets, check a bottle for a tripped canary",
		Description: "A canary is a random value planted in an agent's environment as BOT_BOTTLE_CANARY\n" +
			"and given to its egress sidecar as EGRESS_TOKEN_CANARY. Nothing legitimate sends it,\n" +
			"so the canary in outbound traffic is proof of exfiltration.\n\n" +
			cli.Examples(
				"bb-canary new",
				"EGRESS_TOKEN_CANARY=$(bb-canary new) bb-canary scan request.txt",
				"bb-canary check my-bottle-1a2b",
			),
		HideHelpCommand: true,
		// A secret may hold commas: --secret is repeated, never split.
		DisableSliceFlagSeparator: true,
		Commands:                  []*ucli.Command{newCommand(), scanCommand(), checkCommand()},
		Action: func(c *ucli.Context) error {
			if c.NArg() == 0 {
				return cli.Usage(errors.New("no command given"), "run 'bb-canary --help' for the commands")
			}
			return cli.Usage(fmt.Errorf("unknown command %q", c.Args().First()), "run 'bb-canary --help' for the commands")
		},
	}
}
