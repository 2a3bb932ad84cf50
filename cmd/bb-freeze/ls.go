package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/freeze"
	"github.com/bb-bottles/bb/lib/state"
)

type lsOptions struct {
	slug string // "" for every bottle
}

func lsCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "ls",
		Usage:     "list the snapshots of a bottle, or of every bottle",
		ArgsUsage: "[SLUG]",
		Description: "Prints a JSON array of snapshots, oldest first, from the bottles' metadata:\n" +
			"{\"slug\",\"image\",\"id\",\"created\",\"backend\",\"latest\",\"present\"}. latest marks the one\n" +
			"bb resume boots; present is whether the backend still has it.\n\n" +
			cli.Examples(
				"bb-freeze ls",
				"bb-freeze ls my-bottle-1a2b",
				"bb-freeze ls | jq -r '.[] | select(.present | not) | .image'",
			),
		Action: func(c *ucli.Context) error {
			args, err := checkArgs(c, 1, "[SLUG]")
			if err != nil {
				return err
			}
			var opts lsOptions
			if len(args) == 1 {
				opts.slug = args[0]
				if err := state.CheckSlug(opts.slug); err != nil {
					return cli.Usage(fmt.Errorf("bad SLUG: %w", err), "bb-launch ls lists the bottles")
				}
			}
			d, err := newDeps(cli.StreamsOf(c))
			if err != nil {
				return err
			}
			return runLs(c.Context, d, opts)
		},
	}
}

func runLs(ctx context.Context, d *deps, opts lsOptions) error {
	var mds []state.Metadata
	if opts.slug != "" {
		md, err := d.st.ReadMetadata(opts.slug)
		if errors.Is(err, fs.ErrNotExist) {
			return cli.Usage(fmt.Errorf("listing snapshots: %w", err), "bb-launch ls lists the bottles")
		}
		if err != nil {
			return cli.Usage(fmt.Errorf("listing snapshots: %w", err))
		}
		mds = []state.Metadata{md}
	} else {
		var err error
		if mds, err = d.st.List(); err != nil {
			fmt.Fprintf(d.s.Err, "bb-freeze: warning: %v\n", err)
		}
	}
	out := []freeze.Listed{}
	for _, md := range mds {
		if len(md.Images) == 0 {
			continue
		}
		f, err := d.bottleFreezer(ctx, md)
		if err != nil {
			return err
		}
		l, err := freeze.List(ctx, f, md)
		if err != nil {
			return err
		}
		out = append(out, l...)
	}
	return cli.WriteJSON(d.s.Out, out)
}
