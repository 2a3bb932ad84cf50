package main

import (
	"context"
	"fmt"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/cli"
)

func routesCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "routes",
		Usage:     "print a bottle's live routes as JSON",
		ArgsUsage: "SLUG",
		Description: "Prints the routes the bottle's sidecar enforces (its routes.yaml) as a JSON array\n" +
			"of routes. A bottle without a routes file has none: its sidecar denies everything.\n\n" +
			cli.Examples(
				"bb-egress routes demo-x1y2",
				"bb-egress routes demo-x1y2 | jq -r '.[].host'",
				"bb-egress routes demo-x1y2 | jq '. + [{\"host\":\"pypi.org\"}]' | yq -P | bb-egress apply demo-x1y2 -",
			),
		Action: action(1, 1, func(c *ucli.Context, args []string) error {
			return runRoutes(c.Context, cli.StreamsOf(c), routesOptions{Slug: args[0]})
		}),
	}
}

type routesOptions struct {
	Slug string
}

func runRoutes(_ context.Context, s cli.Streams, o routesOptions) error {
	b, err := openBottle(s, o.Slug)
	if err != nil {
		return err
	}
	rs, data, err := b.readRoutes()
	if err != nil {
		return err
	}
	if data == nil {
		fmt.Fprintf(s.Err, "bb-egress: bottle %s has no routes file: its sidecar denies everything\n", b.Slug)
	}
	return cli.WriteJSON(s.Out, rs)
}
