package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/freeze"
	"github.com/bb-bottles/bb/lib/state"
)

type rmOptions struct {
	slug  string
	image string // a reference, a tag or an ID
}

func rmCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "rm",
		Usage:     "remove one snapshot of a bottle",
		ArgsUsage: "SLUG IMAGE",
		Description: "Removes the snapshot IMAGE of bottle SLUG from the backend and from the metadata.\n" +
			"IMAGE is its reference (bb/<slug>:<time>), its tag (<time>) or its ID. Removing the\n" +
			"newest moves bb/<slug>:latest to the one before. Prints the removed snapshot as JSON:\n" +
			"{\"slug\",\"image\",\"id\",\"created\",\"backend\"}. An IMAGE the bottle does not list exits 2.\n\n" +
			cli.Examples(
				"bb-freeze rm my-bottle-1a2b 20261126T120000Z",
				"bb-freeze rm my-bottle-1a2b bb/my-bottle-1a2b:20261126T120000Z",
				"bb-freeze ls my-bottle-1a2b | jq -r '.[0].image' | xargs bb-freeze rm my-bottle-1a2b",
			),
		Action: func(c *ucli.Context) error {
			args, err := checkArgs(c, 2, "SLUG IMAGE")
			if err != nil {
				return err
			}
			if len(args) < 2 {
				return cli.Usage(errors.New("rm takes SLUG IMAGE"), "bb-freeze ls lists the snapshots")
			}
			opts := rmOptions{slug: args[0], image: args[1]}
			if err := state.CheckSlug(opts.slug); err != nil {
				return cli.Usage(fmt.Errorf("bad SLUG: %w", err), "bb-launch ls lists the bottles")
			}
			d, err := newDeps(cli.StreamsOf(c))
			if err != nil {
				return err
			}
			return runRm(c.Context, d, opts)
		},
	}
}

// removed is what rm prints.
type removed struct {
	Slug    string    `json:"slug"`
	Image   string    `json:"image"`
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Backend string    `json:"backend"`
}

func runRm(ctx context.Context, d *deps, opts rmOptions) error {
	md, err := d.st.ReadMetadata(opts.slug)
	if errors.Is(err, fs.ErrNotExist) {
		return cli.Usage(fmt.Errorf("removing a snapshot: %w", err), "bb-launch ls lists the bottles")
	}
	if err != nil {
		return cli.Usage(fmt.Errorf("removing a snapshot: %w", err))
	}
	// An unknown IMAGE is bad input whether or not the backend answers.
	if _, _, err := freeze.Find(md, opts.image); err != nil {
		return err
	}
	f, err := d.bottleFreezer(ctx, md)
	if err != nil {
		return err
	}
	im, err := freeze.Remove(ctx, d.st, f, opts.slug, opts.image)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.s.Err, "bb-freeze: removed %s of bottle %s\n", im.Ref, opts.slug)
	return cli.WriteJSON(d.s.Out, removed{Slug: opts.slug, Image: im.Ref, ID: im.ID,
		Created: im.Created, Backend: backend.Of(md)})
}
