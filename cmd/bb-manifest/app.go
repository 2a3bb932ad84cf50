package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/yamlx"
	ucli "github.com/urfave/cli/v2"
)

type options struct {
	file  string
	list  bool
	agent string
}

func newApp() *ucli.App {
	return &ucli.App{
		Name:      "bb-manifest",
		Usage:     "print one agent's manifest (JSON) from the manifest index",
		UsageText: "bb-manifest [--file FILE|DIR] AGENT\nbb-manifest [--file FILE|DIR] --list",
		Description: "Reads the manifest index -- --file, else $BB_MANIFEST, else ./bb.yaml; a YAML file\n" +
			"or a directory of NAME.md agents and NAME.yaml bottles -- validates all of it, and\n" +
			"prints AGENT with its effective bottle as JSON for bb-plan. No secret is read.\n\n" +
			cli.Examples(
				"bb-manifest --file examples/bb.yaml claude",
				"bb-manifest --list | jq -r '.[].name'",
				"BB_MANIFEST=~/agents bb-manifest reviewer | bb-plan | bb-launch",
			),
		HideHelpCommand: true,
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "manifest `FILE` or directory, - for stdin (default: $BB_MANIFEST, else ./bb.yaml)"},
			&ucli.BoolFlag{Name: "list", Aliases: []string{"l"}, Usage: "print the agents as a JSON array of {name, template, bottle}"},
		},
		Action: func(c *ucli.Context) error {
			opts := options{file: c.String("file"), list: c.Bool("list"), agent: c.Args().First()}
			switch {
			case c.NArg() > 1:
				return cli.Usagef("too many arguments: %q", c.Args().Slice())
			case opts.list && c.NArg() == 1:
				return cli.Usage(errors.New("--list takes no AGENT"), "run 'bb-manifest --list' or 'bb-manifest "+opts.agent+"'")
			case !opts.list && c.NArg() == 0:
				return cli.Usage(errors.New("no AGENT given"), "name an agent, or run 'bb-manifest --list' to see them")
			}
			return runManifest(c.Context, cli.StreamsOf(c), opts)
		},
	}
}

func runManifest(_ context.Context, s cli.Streams, opts options) (err error) {
	var ix *manifest.ManifestIndex
	if file := manifest.Path(opts.file, s.Env); file == "-" {
		ix, err = loadStdin(s)
	} else {
		ix, err = manifest.Load(file, s.Env)
	}
	if err != nil {
		return usage(err)
	}
	if opts.list {
		return cli.WriteJSON(s.Out, ix.List())
	}
	m, err := ix.Resolve(opts.agent)
	if err != nil {
		return usage(err)
	}
	return cli.WriteJSON(s.Out, m)
}

// loadStdin reads the index from stdin (--file -): one YAML file, whose
// relative paths are taken from the current folder.
func loadStdin(s cli.Streams) (*manifest.ManifestIndex, error) {
	data, err := io.ReadAll(s.In)
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", cli.StdinLabel, err)
	}
	return manifest.LoadBytes(data, cli.StdinLabel, s.Env)
}

// usage marks a manifest error as bad input, with its hints.
func usage(err error) error {
	var ye *yamlx.Error
	switch {
	case errors.As(err, &ye):
		return cli.Usage(err, ye.Hints...)
	case errors.Is(err, fs.ErrNotExist):
		return cli.Usage(err, "name the manifest with --file FILE (or a directory), or set BB_MANIFEST",
			"examples/bb.yaml in the bb sources is one to start from")
	}
	return cli.Usage(err)
}
