package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/terminal"
	"github.com/bb-bottles/bb/lib/ttyhold"
)

// guestCommand is what bb runs inside a bottle's guest where its backend
// lacks a way of its own (smolvm): bb puts this static binary there and
// calls it. Hidden: a person never types it.
func guestCommand() *ucli.Command {
	socket := &ucli.StringFlag{Name: "socket", Required: true, Usage: "the holder's Unix socket `PATH`"}
	return &ucli.Command{
		Name:   "guest",
		Usage:  "helpers bb runs inside a bottle's guest",
		Hidden: true,
		Subcommands: []*ucli.Command{
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
				Name:  "attach",
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
