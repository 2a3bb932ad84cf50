package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/backend"
	_ "github.com/bb-bottles/bb/lib/backend/all"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/freeze"
	"github.com/bb-bottles/bb/lib/state"
	"github.com/bb-bottles/bb/lib/terminal"
)

func newApp() *ucli.App {
	return &ucli.App{
		Name:  "bb-freeze",
		Usage: "snapshot bottles, list and remove their snapshots",
		Description: "A snapshot is a bottle's container state committed to an image, bb/<slug>:<UTC time>,\n" +
			"with bb/<slug>:latest following the newest; bb resume boots it. Records go to stdout\n" +
			"as JSON, everything else to stderr.\n\n" +
			cli.Examples(
				"bb-freeze commit my-bottle-1a2b",
				"bb-freeze commit --all --keep 5     # from cron",
				"bb-freeze ls my-bottle-1a2b | jq -r '.[].image'",
				"bb-freeze rm my-bottle-1a2b 20261126T120000Z",
			),
		HideHelpCommand: true,
		Commands:        []*ucli.Command{commitCommand(), lsCommand(), rmCommand()},
		Action: func(c *ucli.Context) error {
			if c.NArg() == 0 {
				return cli.Usage(errors.New("no command given"), "run 'bb-freeze --help' for the commands")
			}
			return cli.Usage(fmt.Errorf("unknown command %q", c.Args().First()), "run 'bb-freeze --help' for the commands")
		},
	}
}

// deps are what the subcommands need from outside: streams, the state, the
// freezers of the backends, and the person's terminal.
type deps struct {
	s  cli.Streams
	st *state.Store
	// freezer returns the Freezer of a backend.
	freezer func(ctx context.Context, backend string) (freeze.Freezer, error)
	// terminal opens the person's terminal to read answers from, failing
	// (with terminal.ErrNoTerminal) when there is none.
	terminal func() (io.ReadCloser, error)
	// labels go on every snapshot (tests add bb.test=1).
	labels map[string]string
	now    func() time.Time
}

// newDeps returns the real deps: the state directory of the environment,
// freezers that connect on first use, and /dev/tty when stderr is a
// terminal (a prompt on a redirected stderr would be invisible).
func newDeps(s cli.Streams) (*deps, error) {
	st, err := state.Open(s.Env)
	if err != nil {
		return nil, cli.Usage(err)
	}
	d := &deps{s: s, st: st, now: time.Now}
	d.terminal = func() (io.ReadCloser, error) {
		f, ok := s.Err.(*os.File)
		if !ok || !isatty.IsTerminal(f.Fd()) {
			return nil, terminal.ErrNoTerminal
		}
		return terminal.Open()
	}
	d.freezer = backends(s, st)
	return d, nil
}

// backends returns a lookup of each backend's Freezer, made once: the
// bottle's backend's freeze capability.
func backends(s cli.Streams, st *state.Store) func(ctx context.Context, backend string) (freeze.Freezer, error) {
	var mu sync.Mutex
	made := map[string]freeze.Freezer{}
	return func(ctx context.Context, name string) (freeze.Freezer, error) {
		mu.Lock()
		defer mu.Unlock()
		if f, ok := made[name]; ok {
			return f, nil
		}
		// Left open: the freezer uses its connection for as long as the
		// command runs.
		b, err := backend.Open(ctx, name, backend.Config{Env: s.Env, Environ: s.Environ, Store: st})
		if err != nil {
			return nil, err
		}
		fb, ok := b.(backend.Freezable)
		if !ok {
			b.Close()
			return nil, backend.Unsupported(b.Name(), "snapshot bottles")
		}
		f := fb.Freezer()
		made[name] = f
		return f, nil
	}
}

// checkArgs refuses a flag written after the positional arguments, which
// urfave/cli would take as one.
func checkArgs(c *ucli.Context, max int, usage string) ([]string, error) {
	args := c.Args().Slice()
	for _, a := range args {
		if strings.HasPrefix(a, "-") && a != "-" {
			return nil, cli.Usage(fmt.Errorf("flag %s after the arguments", a),
				"flags go first: bb-freeze "+c.Command.Name+" [flags] "+usage)
		}
	}
	if len(args) > max {
		return nil, cli.Usage(fmt.Errorf("%s takes %s, got %q", c.Command.Name, usage, args),
			"run 'bb-freeze "+c.Command.Name+" --help' for usage")
	}
	return args, nil
}

// bottleFreezer returns the Freezer of bottle md's backend.
func (d *deps) bottleFreezer(ctx context.Context, md state.Metadata) (freeze.Freezer, error) {
	return d.freezer(ctx, md.Backend)
}
