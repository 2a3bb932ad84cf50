package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/state"
	"github.com/bb-bottles/bb/lib/trust"
	"github.com/bb-bottles/bb/lib/yamlx"
	ucli "github.com/urfave/cli/v2"
)

type options struct {
	file  string
	list  bool
	trust bool
	agent string
}

func newApp() *ucli.App {
	return &ucli.App{
		Name:      "bb-manifest",
		Usage:     "print one agent's manifest (JSON) from the manifest index",
		UsageText: "bb-manifest [--file FILE|DIR] [--trust] AGENT\nbb-manifest [--file FILE|DIR] --list",
		Description: "Reads the manifest index -- --file, else $BB_MANIFEST, else ./bb.yaml; a YAML file\n" +
			"or a directory of NAME.md agents and NAME.yaml bottles -- validates all of it, and\n" +
			"prints AGENT with its effective bottle as JSON for bb-plan. No secret is read.\n\n" +
			"A manifest (or prompt file) that lies in a bottle's workspace may have been written by\n" +
			"the agent; bb-launch obeys it only once you trust its content. --trust records the\n" +
			"content of every file AGENT's manifest was made from as trusted (read them first: a\n" +
			"change since you last trusted a file is shown on stderr).\n\n" +
			cli.Examples(
				"bb-manifest --file examples/bb.yaml claude",
				"bb-manifest --list | jq -r '.[].name'",
				"BB_MANIFEST=~/agents bb-manifest reviewer | bb-plan | bb-launch",
				"bb-manifest --trust claude | bb-plan | bb-launch   # after reading what an agent may have changed",
			),
		HideHelpCommand: true,
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "manifest `FILE` or directory, - for stdin (default: $BB_MANIFEST, else ./bb.yaml)"},
			&ucli.BoolFlag{Name: "list", Aliases: []string{"l"}, Usage: "print the agents as a JSON array of {name, template, bottle}"},
			&ucli.BoolFlag{Name: "trust", Usage: "trust the content of the files AGENT's manifest was made from (for bb-launch, when they lie in a workspace)"},
		},
		Action: func(c *ucli.Context) error {
			opts := options{file: c.String("file"), list: c.Bool("list"), trust: c.Bool("trust"), agent: c.Args().First()}
			switch {
			case c.NArg() > 1:
				return cli.Usagef("too many arguments: %q", c.Args().Slice())
			case opts.list && opts.trust:
				return cli.Usage(errors.New("--trust takes an AGENT, not --list"), "run 'bb-manifest --trust AGENT'")
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
	if opts.trust {
		if err := trustFiles(s, m.Files); err != nil {
			return err
		}
	}
	return cli.WriteJSON(s.Out, m)
}

// trustFiles records the content of each file, as it was read, as trusted;
// a change since the content trusted before is shown on stderr.
func trustFiles(s cli.Streams, files []manifest.SourceFile) error {
	dir, err := state.Dir(s.Env)
	if err != nil {
		return cli.Usage(fmt.Errorf("finding bb's state folder: %w", err))
	}
	store := trust.Open(dir)
	for _, f := range files {
		data, err := os.ReadFile(f.Path)
		if err != nil {
			return cli.Usage(fmt.Errorf("reading %s to trust it: %w", f.Path, err))
		}
		if trust.Sum(data) != f.SHA256 {
			return cli.Usage(fmt.Errorf("%s changed while bb-manifest was reading it: nothing was trusted", f.Path),
				"run the command again")
		}
		ok, before, err := store.Lookup(f.Path, f.SHA256)
		if err != nil {
			return cli.Backend(err)
		}
		if ok {
			continue
		}
		if before != nil {
			fmt.Fprintf(s.Err, "bb-manifest: trusting %s, which changed since you last trusted it:\n%s", f.Path, trust.Diff(before, data))
		} else {
			fmt.Fprintf(s.Err, "bb-manifest: trusting %s\n", f.Path)
		}
		if err := store.Trust(f.Path, data); err != nil {
			return cli.Backend(err)
		}
	}
	return nil
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
