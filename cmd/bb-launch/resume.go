package main

import (
	"context"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/state"
)

func resumeCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "resume",
		Usage:     "boot a stopped bottle again",
		ArgsUsage: "SLUG",
		Description: "A bottle whose agent container stopped but still exists (preserved, or its agent\n" +
			"exited) is restarted, with everything its filesystem holds, its sidecar with it; --discard\n" +
			"removes that container and boots a snapshot instead.\n" +
			"Otherwise it boots the bottle from its newest committed image (bb-freeze commit) if the engine\n" +
			"still has it, otherwise from its Dockerfile, and says which; with the same slug, canary,\n" +
			"CA and routes (as bb-egress apply last left them). Attaches as bb-launch does, or prints\n" +
			"the launch record with --detach or without a terminal.\n\n" +
			cli.Examples("bb-launch resume demo-x1y2", "bb-launch resume --detach demo-x1y2"),
		Flags: append(launchFlags(), &ucli.BoolFlag{Name: "discard",
			Usage: "remove a stopped agent container, and what it holds beyond the newest snapshot, instead of restarting it"}),
		Action: slugAction(func(c *ucli.Context, d *deps, slug string) error {
			args, err := buildArgs(c.StringSlice("build-arg"))
			if err != nil {
				return err
			}
			return runResume(c.Context, d, slug, launchOptions{Detach: c.Bool("detach"),
				UpstreamCA: c.String("upstream-ca"), AllowPrivate: c.Bool("allow-private"), BuildArgs: args}, c.Bool("discard"))
		}),
	}
}

func runResume(ctx context.Context, d *deps, slug string, o launchOptions, discard bool) error {
	raw, err := d.store.ReadPlan(slug)
	if err != nil {
		return cli.Usage(err)
	}
	p, err := decodePlan(raw, d.store.BottleDir(slug)+"/"+state.PlanFile)
	if err != nil {
		return err
	}
	b, md, err := d.bottleBackend(ctx, slug)
	if err != nil {
		return err
	}
	defer b.Close()
	return start(ctx, d, b, startOptions{plan: p, planJSON: raw, launchOptions: o},
		func(ctx context.Context, lo backend.LaunchOptions) (*backend.Record, error) {
			return backend.Resume(ctx, b, lo, md, discard)
		})
}
