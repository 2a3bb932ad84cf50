package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/guest"
	"github.com/bb-bottles/bb/lib/terminal"
	"github.com/bb-bottles/bb/lib/ttyhold"
)

// guestCommand is the agent's side of a bottle on a backend that cannot
// prepare an agent from outside, run inside its guest by bb-launch: this
// static binary is already on the host for the sidecar's image, so the
// guest gets it rather than bb shipping a second one. init, attach and run
// are Apple's container's (lib/guest); hold, join, status and dial are
// smolvm's (lib/ttyhold).
func guestCommand() *ucli.Command {
	socket := &ucli.StringFlag{Name: "socket", Required: true, Usage: "the holder's Unix socket `PATH`"}
	return &ucli.Command{
		Name:   "guest",
		Usage:  "inside a bottle's agent: its init, its terminal, commands with no new privileges (run by bb-launch)",
		Hidden: true,
		Description: "bb-launch runs these inside the agent's container or VM on backends that cannot prepare an\n" +
			"agent from outside (macos-container, smolvm); a person has no need to.",
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
			{
				Name:      "hold",
				Usage:     "run a command on a terminal that clients join and leave",
				ArgsUsage: "-- COMMAND [ARG...]",
				Flags:     []ucli.Flag{socket, &ucli.BoolFlag{Name: "wait", Usage: "start the command when the first client joins"}},
				Action: func(c *ucli.Context) error {
					if c.NArg() == 0 {
						return cli.Usagef("hold: no command")
					}
					s := cli.StreamsOf(c)
					wd, _ := os.Getwd()
					code, err := ttyhold.Hold(c.Context, ttyhold.HoldOptions{Socket: c.String("socket"), Wait: c.Bool("wait"),
						Command: c.Args().Slice(), Env: s.Environ(), Dir: wd})
					if err != nil {
						return err
					}
					return cli.Exit(code)
				},
			},
			{
				Name:  "join",
				Usage: "join a held terminal (Ctrl-P Ctrl-Q leaves it running); exit with its command's status",
				Flags: []ucli.Flag{socket},
				Action: func(c *ucli.Context) error {
					s := cli.StreamsOf(c)
					var sizes chan [2]uint16
					if f, ok := s.In.(*os.File); ok {
						if t, err := terminal.New(f); err == nil {
							if err := t.MakeRaw(); err != nil {
								return err
							}
							defer t.Restore()
							sizes = make(chan [2]uint16, 1)
							go func() {
								defer close(sizes)
								for sz := range t.Resizes(c.Context) {
									sizes <- [2]uint16{uint16(sz.Width), uint16(sz.Height)}
								}
							}()
						}
					}
					code, detached, err := ttyhold.Attach(c.Context, c.String("socket"), s.In, s.Out, sizes, s.Env("TERM"))
					if err != nil || detached {
						return err
					}
					return cli.Exit(code)
				},
			},
			{
				Name:  "status",
				Usage: `print {"running":BOOL,"exit_code":N} of the holder at --socket`,
				Flags: []ucli.Flag{socket},
				Action: func(c *ucli.Context) error {
					r, err := ttyhold.Status(c.String("socket"))
					if err != nil {
						return err
					}
					return cli.WriteJSONLine(cli.StreamsOf(c).Out, r)
				},
			},
			{
				Name:      "dial",
				Usage:     "wait until a TCP connection to HOST:PORT succeeds",
				ArgsUsage: "HOST:PORT",
				Flags:     []ucli.Flag{&ucli.DurationFlag{Name: "timeout", Value: 20 * time.Second, Usage: "give up after this long"}},
				Action: func(c *ucli.Context) error {
					if c.NArg() != 1 {
						return cli.Usagef("dial: want HOST:PORT")
					}
					return dial(c.Context, c.Args().First(), c.Duration("timeout"))
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

// dial retries a TCP connection to addr until one succeeds or timeout
// passes: a sidecar that is starting refuses for a moment.
func dial(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return cli.Negative(fmt.Errorf("dialing %s: no answer within %v: %w", addr, timeout, err))
			}
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
