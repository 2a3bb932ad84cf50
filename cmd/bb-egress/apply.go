package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/routes"
	"github.com/bb-bottles/bb/lib/state"
)

func applyCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "apply",
		Usage:     "replace a bottle's routes with a routes file, live",
		ArgsUsage: "SLUG FILE|-",
		Description: "Checks the routes file (a YAML list of routes, as in a bottle's egress.routes) and,\n" +
			"only if all of it is valid, replaces the bottle's routes.yaml with it and asks the\n" +
			"backend to reload the sidecar. The sidecar also watches the file, so a backend that\n" +
			"cannot signal it still gets the change within seconds. An invalid file is refused\n" +
			"with its line, column and field, and the routes in force stay as they were.\n" +
			"Prints {\"slug\",\"routes_file\",\"routes\",\"changed\",\"reloaded\"}.\n\n" +
			cli.Examples(
				"bb-egress apply demo-x1y2 routes.yaml",
				"bb-egress routes demo-x1y2 | yq -P > r.yaml && $EDITOR r.yaml && bb-egress apply demo-x1y2 r.yaml",
				"printf -- '- host: pypi.org\\n  methods: [GET]\\n' | bb-egress apply demo-x1y2 -",
			),
		Action: action(2, 2, func(c *ucli.Context, args []string) error {
			return runApply(c.Context, cli.StreamsOf(c), applyOptions{Slug: args[0], File: args[1]})
		}),
	}
}

type applyOptions struct {
	Slug string
	File string // "-" is stdin
}

// applyResult is what apply and allow print: what the next command needs.
type applyResult struct {
	Slug       string `json:"slug"`
	RoutesFile string `json:"routes_file"` // the bottle's routes.yaml
	Routes     int    `json:"routes"`      // how many routes are in force now
	Changed    bool   `json:"changed"`     // false when the routes were already so
	Reloaded   bool   `json:"reloaded"`    // the backend signalled the sidecar
}

func runApply(ctx context.Context, s cli.Streams, o applyOptions) error {
	b, err := openBottle(s, o.Slug)
	if err != nil {
		return err
	}
	r, label, err := cli.Open(s, o.File)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		return cli.Usage(fmt.Errorf("reading %s: %w", label, err))
	}
	rs, err := routes.Parse(data, label)
	if err != nil {
		return cli.Usage(fmt.Errorf("refusing the routes: %w", err),
			"the routes of bottle "+b.Slug+" are unchanged")
	}
	// The file is written as given, so its comments stay for the next edit.
	changed, err := b.updateRoutes(ctx, func() ([]byte, error) { return data, nil })
	if err != nil {
		return err
	}
	if !changed {
		fmt.Fprintf(s.Err, "bb-egress: bottle %s already has these routes; nothing changed\n", b.Slug)
	}
	return b.reload(ctx, s, applyResult{Slug: b.Slug, RoutesFile: b.routesFile(), Routes: len(rs), Changed: changed})
}

// errUnchanged from an update function leaves the routes file as it is.
var errUnchanged = errors.New("unchanged")

// updateRoutes replaces the routes file with what update returns, under
// the bottle's lock (so update may read the current routes) and atomically:
// the sidecar sees the old file or the new, never half of one. It reports
// whether the file changed.
func (b *bottle) updateRoutes(ctx context.Context, update func() ([]byte, error)) (bool, error) {
	unlock, err := b.Store.Lock(ctx, b.Slug)
	if err != nil {
		return false, err
	}
	defer unlock()
	next, err := update()
	if errors.Is(err, errUnchanged) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if cur, err := os.ReadFile(b.routesFile()); err == nil && bytes.Equal(cur, next) {
		return false, nil
	}
	if _, err := b.Store.MakeEgressDir(b.Slug); err != nil {
		return false, err
	}
	// Not a secret, and the sidecar may run as another user than bb.
	if err := state.WriteFileAtomic(b.routesFile(), next, 0o644); err != nil {
		return false, fmt.Errorf("replacing the routes of bottle %s: %w", b.Slug, err)
	}
	return true, unlock()
}

// reload asks the bottle's backend to signal its sidecar, says what
// happened and prints res. It runs `bb-launch reload SLUG`, which opens the
// bottle's backend: this binary is also the sidecar's FROM-scratch image,
// and links no backend.
func (b *bottle) reload(ctx context.Context, s cli.Streams, res applyResult) error {
	if !res.Changed {
		return cli.WriteJSON(s.Out, res)
	}
	var nr *backend.NotReloadedError
	if err := backend.ExecReload(ctx, "bb-launch", b.Slug); errors.As(err, &nr) {
		fmt.Fprintf(s.Err, "bb-egress: wrote %d route(s) to %s; %s\n", res.Routes, res.RoutesFile, cli.Printable(nr.Reason))
		return cli.WriteJSON(s.Out, res)
	} else if err != nil {
		if werr := cli.WriteJSON(s.Out, res); werr != nil {
			return werr
		}
		return cli.Backend(fmt.Errorf("reloading the sidecar of bottle %s: %w", b.Slug, err),
			"the routes were written; a running sidecar picks them up by watching the file")
	}
	res.Reloaded = true
	fmt.Fprintf(s.Err, "bb-egress: wrote %d route(s) to %s and reloaded the sidecar\n", res.Routes, res.RoutesFile)
	return cli.WriteJSON(s.Out, res)
}
