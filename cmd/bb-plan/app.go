package main

import (
	"errors"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/plan"
)

func newApp() *ucli.App {
	return &ucli.App{
		Name:      "bb-plan",
		Usage:     "plan a bottle's launch from one agent's Manifest (pure: writes nothing, starts nothing)",
		UsageText: "bb-plan [options] [MANIFEST.json | -]",
		Description: "Reads a Manifest (bb-manifest's output) from the file or stdin and prints the Plan\n" +
			"JSON: a new slug and canary, the egress sidecar's routes and token names, the agent's\n" +
			"image and environment, and the backend's resource names. No token value is read.\n\n" +
			askHelp + "\n\n" +
			cli.Examples(
				"bb-manifest demo | bb-plan | jq .                 # the dry run of a launch",
				"bb-manifest demo | bb-plan --backend smolvm --label 'fix #42' --color orange",
				"bb-plan --slug demo-test --canary \"$(bb-canary new)\" manifest.json",
				"bb-manifest demo | bb-plan --ask                  # a person picks the label and colour",
			),
		HideHelpCommand: true,
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "backend", Value: names.Docker,
				Usage: "where the bottle runs: " + strings.Join(names.Backends, ", ")},
			&ucli.StringFlag{Name: "slug", Usage: "the bottle's name, a DNS label (default: <agent>-<4 random chars>)"},
			&ucli.StringFlag{Name: "label", Usage: "what a person sees for the bottle (default: the agent's name)"},
			&ucli.StringFlag{Name: "color", Usage: "the bottle's colour: " + strings.Join(plan.Palette, ", ") +
				" or #rrggbb (default: picked from the slug)"},
			&ucli.StringFlag{Name: "canary", Usage: "the canary, 43 base64url chars, for reproducible plans (default: a new one)"},
			&ucli.BoolFlag{Name: "ask", Usage: "ask a person for the label and colour the flags leave open, when one can be asked (see above)"},
		},
		Action: func(c *ucli.Context) error {
			if c.NArg() > 1 {
				return cli.Usage(errors.New("want at most one manifest file"), "run 'bb-plan --help' for usage")
			}
			return runPlan(c.Context, cli.StreamsOf(c), planOptions{
				Manifest: c.Args().First(),
				Ask:      c.Bool("ask"),
				Options: plan.Options{Backend: c.String("backend"), Slug: c.String("slug"),
					Label: c.String("label"), Color: c.String("color"), Canary: c.String("canary")},
			})
		},
	}
}
