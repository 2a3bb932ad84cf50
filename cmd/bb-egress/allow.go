package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	ucli "github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/routes"
)

func allowCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "allow",
		Usage:     "add one route to a bottle's routes, live",
		ArgsUsage: "SLUG HOST",
		Description: "Adds a route for HOST (or a *. wildcard of its subdomains), optionally narrowed to\n" +
			"methods, path prefixes and ports, to the bottle's routes.yaml, then reloads the sidecar\n" +
			"as apply does. A route that is already there exactly is not added twice. Comments in\n" +
			"the file are kept. Credential injection needs a routes file: see apply.\n" +
			"Prints {\"slug\",\"routes_file\",\"routes\",\"changed\",\"reloaded\"}.\n\n" +
			cli.Examples(
				"bb-egress allow demo-x1y2 pypi.org",
				"bb-egress allow demo-x1y2 files.pythonhosted.org --methods GET,HEAD",
				"bb-egress allow demo-x1y2 api.github.com --methods GET --paths /repos/me/,/user",
				"bb-egress allow demo-x1y2 registry.internal --ports 5000",
			),
		Flags: []ucli.Flag{
			&ucli.StringSliceFlag{Name: "methods", Usage: "allow only these HTTP methods (default: any)"},
			&ucli.StringSliceFlag{Name: "paths", Usage: "allow only these path prefixes (default: any)"},
			&ucli.IntSliceFlag{Name: "ports", Usage: "allow only these ports (default: 443 and 80)"},
		},
		Action: action(2, 2, func(c *ucli.Context, args []string) error {
			return runAllow(c.Context, cli.StreamsOf(c), allowOptions{
				Slug: args[0],
				Route: routes.Route{Host: args[1], Methods: upper(c.StringSlice("methods")),
					Paths: c.StringSlice("paths"), Ports: c.IntSlice("ports")},
			})
		}),
	}
}

type allowOptions struct {
	Slug  string
	Route routes.Route
}

func runAllow(ctx context.Context, s cli.Streams, o allowOptions) error {
	// The route is checked before the bottle: a typo in it should not
	// depend on where the state is.
	if err := o.Route.Validate(); err != nil {
		return cli.Usage(fmt.Errorf("refusing the route: %w", err))
	}
	b, err := openBottle(s, o.Slug)
	if err != nil {
		return err
	}
	n := 0
	changed, err := b.updateRoutes(ctx, func() ([]byte, error) {
		cur, data, err := b.readRoutes()
		if err != nil {
			return nil, err
		}
		n = len(cur)
		for _, r := range cur {
			if sameRoute(r, o.Route) {
				return nil, errUnchanged
			}
		}
		next, err := appendRoute(data, o.Route)
		if err != nil {
			return nil, fmt.Errorf("adding to the routes of bottle %s: %w", b.Slug, err)
		}
		// What is written must be what the sidecar will read.
		rs, err := routes.Parse(next, b.routesFile())
		if err != nil {
			return nil, fmt.Errorf("adding to the routes of bottle %s: %w", b.Slug, err)
		}
		n = len(rs)
		return next, nil
	})
	if err != nil {
		return err
	}
	if !changed {
		fmt.Fprintf(s.Err, "bb-egress: bottle %s already has route %s; nothing changed\n", b.Slug, o.Route.String())
	}
	return b.reload(ctx, s, applyResult{Slug: b.Slug, RoutesFile: b.routesFile(), Routes: n, Changed: changed})
}

// appendRoute adds r at the end of the routes file data, keeping the rest
// of the file (its comments too) as it was.
func appendRoute(data []byte, r routes.Route) ([]byte, error) {
	var item yaml.Node
	if err := item.Encode(r); err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind == yaml.ScalarNode { // empty, or null
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.SequenceNode, Tag: "!!seq"}}}
	}
	seq := doc.Content[0]
	if seq.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("the routes file is not a list")
	}
	seq.Style &^= yaml.FlowStyle // [] becomes a block list
	seq.Content = append(seq.Content, &item)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// sameRoute reports whether a and b are the same route, an absent list
// being the same as an empty one.
func sameRoute(a, b routes.Route) bool {
	return a.Host == b.Host && slices.Equal(a.Methods, b.Methods) &&
		slices.Equal(a.Paths, b.Paths) && slices.Equal(a.Ports, b.Ports) &&
		a.Websocket == b.Websocket && a.Inject == nil && b.Inject == nil
}

func upper(ss []string) []string {
	for i, s := range ss {
		ss[i] = strings.ToUpper(s)
	}
	return ss
}
