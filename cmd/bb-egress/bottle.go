package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/routes"
	"github.com/bb-bottles/bb/lib/state"
)

// bottle is one existing bottle's state, as the host-side commands see it.
type bottle struct {
	Slug  string
	Store *state.Store
}

// openBottle checks slug and that the bottle exists in the state directory.
func openBottle(s cli.Streams, slug string) (*bottle, error) {
	if slug == "" {
		return nil, cli.Usage(errors.New("missing the bottle's SLUG"), "run 'bb-launch ls' to list the bottles")
	}
	if err := state.CheckSlug(slug); err != nil {
		return nil, cli.Usage(err)
	}
	st, err := state.Open(s.Env)
	if err != nil {
		return nil, cli.Usage(err)
	}
	if !st.Exists(slug) {
		return nil, cli.Usage(&state.NotFoundError{Slug: slug, Dir: st.Dir}, "run 'bb-launch ls' to list the bottles")
	}
	return &bottle{Slug: slug, Store: st}, nil
}

func (b *bottle) egressFile(name string) string {
	return filepath.Join(b.Store.EgressDir(b.Slug), name)
}

func (b *bottle) routesFile() string { return b.egressFile(state.RoutesFile) }

// readRoutes reads the bottle's routes file and its bytes. A bottle
// without one has no routes: its sidecar denies everything.
func (b *bottle) readRoutes() ([]routes.Route, []byte, error) {
	path := b.routesFile()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return []routes.Route{}, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading the routes of bottle %s: %w", b.Slug, err)
	}
	rs, err := routes.Parse(data, path)
	if err != nil {
		return nil, nil, cli.Usage(fmt.Errorf("reading the routes of bottle %s: %w", b.Slug, err),
			"fix the file, or replace it with 'bb-egress apply "+b.Slug+" FILE'")
	}
	return rs, data, nil
}

// errHelpShown ends an action that printed its help instead.
var errHelpShown = cli.ErrHelpShown

// positional parses flags interspersed with the arguments (cli.Positional).
func positional(c *ucli.Context) ([]string, error) { return cli.Positional(c) }

func usageErr(c *ucli.Context, err error) error {
	return cli.Usage(err, "run '"+c.Command.HelpName+" --help' for usage")
}

// action adapts a command's run function: it parses interspersed flags,
// checks the number of positional arguments, and treats a help request
// as done.
func action(min, max int, run func(c *ucli.Context, args []string) error) ucli.ActionFunc {
	return func(c *ucli.Context) error {
		args, err := positional(c)
		if errors.Is(err, errHelpShown) {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case len(args) < min:
			return usageErr(c, fmt.Errorf("want %s", c.Command.ArgsUsage))
		case len(args) > max:
			return usageErr(c, fmt.Errorf("too many arguments: want %s", c.Command.ArgsUsage))
		}
		return run(c, args)
	}
}
