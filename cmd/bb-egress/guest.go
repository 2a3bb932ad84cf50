package main

import (
	"errors"
	"os"
	"slices"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/guest"
)

// guestCommand is the agent's side of a bottle on Apple's container, run
// inside the agent's container by bb-launch (lib/guest): this static binary
// is already on the host for the sidecar's image, so the agent's container
// mounts it rather than bb shipping a second one.
func guestCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "guest",
		Usage: "inside a bottle's agent: its init, its terminal, commands with no new privileges (run by bb-launch)",
		Description: "bb-launch runs these inside the agent's container on backends that cannot prepare an agent\n" +
			"from outside (macos-container); a person has no need to.",
		HideHelpCommand: true,
		Subcommands: []*ucli.Command{
			{
				Name:      "init",
				Usage:     "provision the agent as root, give root up, run CMD on a terminal clients attach to",
				ArgsUsage: "--spec FILE -- CMD [ARG...]",
				Flags:     []ucli.Flag{&ucli.StringFlag{Name: "spec", Required: true, Usage: "the guest spec `FILE` (JSON)"}},
				Action: func(c *ucli.Context) error {
					s := cli.StreamsOf(c)
					code, err := guest.Init(c.Context, guest.InitOptions{SpecPath: c.String("spec"), Command: rest(c), Stderr: s.Err})
					if err != nil {
						return cli.Backend(err)
					}
					return cli.Exit(code)
				},
			},
			{
				Name:      "attach",
				Usage:     "join this terminal to the agent's until it exits (its status is this command's)",
				ArgsUsage: "--socket PATH",
				Flags:     []ucli.Flag{&ucli.StringFlag{Name: "socket", Required: true, Usage: "the agent's attach socket `PATH`"}},
				Action: func(c *ucli.Context) error {
					s := cli.StreamsOf(c)
					in, ok := s.In.(*os.File)
					if !ok {
						return cli.Usagef("attach needs a file for its input")
					}
					code, err := guest.Attach(c.Context, c.String("socket"), in, s.Out)
					if err != nil {
						if errors.Is(err, guest.ErrNotLinux) {
							return cli.Usage(err)
						}
						return cli.Backend(err)
					}
					return cli.Exit(code)
				},
			},
			{
				Name:      "run",
				Usage:     "run CMD with no new privileges",
				ArgsUsage: "-- CMD [ARG...]",
				Action: func(c *ucli.Context) error {
					argv := rest(c)
					if len(argv) == 0 {
						return cli.Usagef("run: no command; want bb-egress guest run -- CMD [ARG...]")
					}
					return cli.Backend(guest.Run(argv, cli.StreamsOf(c).Environ()))
				},
			},
		},
	}
}

// rest is what follows the flags, without a leading "--".
func rest(c *ucli.Context) []string {
	args := c.Args().Slice()
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	return slices.Clone(args)
}
