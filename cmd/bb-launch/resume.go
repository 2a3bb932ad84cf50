package main

import (
	"context"
	"fmt"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/backend/docker"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/names"
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
	md, err := d.store.ReadMetadata(slug)
	if err != nil {
		return cli.Usage(err)
	}
	api, err := d.engine(ctx)
	if err != nil {
		return err
	}
	defer api.Close()
	left, running, err := docker.Leftovers(ctx, api, slug)
	if err != nil {
		return err
	}
	if running {
		return cli.Usage(fmt.Errorf("bottle %s is running", slug),
			fmt.Sprintf("join it with 'bb-launch attach %s', or stop it first with 'bb-launch stop %s'", slug, slug))
	}
	agent, _, err := docker.FindContainer(ctx, api, slug, names.RoleAgent)
	if err != nil {
		return err
	}
	switch {
	case agent != "" && !discard:
		// Its filesystem holds work no snapshot has.
		fmt.Fprintf(d.Err, "bb-launch: restarting bottle %s's stopped agent container, with what it holds ('--discard' boots a snapshot instead)\n", slug)
		return start(ctx, d, api, startOptions{plan: p, planJSON: raw, launchOptions: o, resume: true, restart: true})
	case agent != "":
		fmt.Fprintf(d.Err, "bb-launch: discarding bottle %s's stopped agent container\n", slug)
	}
	if left {
		// What a crashed launcher or a dead agent left: cleared, the state stays.
		if err := stopLocked(ctx, d, api, slug); err != nil {
			return err
		}
	}
	image, err := docker.ResumeImage(ctx, api, md)
	if err != nil {
		return err
	}
	last, err := docker.ReadLaunched(d.store, slug)
	if err != nil {
		return cli.Usage(err)
	}
	so := startOptions{plan: p, planJSON: raw, launchOptions: o, resume: true, image: image, baseImage: last.BaseImage}
	// What the first launch allowed, a resume keeps.
	so.AllowPrivate = so.AllowPrivate || last.AllowPrivate
	for k, v := range last.BuildArgs {
		if _, set := so.BuildArgs[k]; !set {
			so.BuildArgs[k] = v
		}
	}
	switch {
	case image != "":
		fmt.Fprintf(d.Err, "bb-launch: resuming bottle %s from its snapshot %s\n", slug, image)
	case last.AgentImage != "" && imageExists(ctx, api, last.AgentImage):
		so.image = last.AgentImage
		why := "it has no snapshot"
		if len(md.Images) > 0 {
			why = "the engine has none of its snapshots"
		}
		fmt.Fprintf(d.Err, "bb-launch: resuming bottle %s from its image %s (%s)\n", slug, so.image, why)
	case len(md.Images) > 0:
		fmt.Fprintf(d.Err, "bb-launch: the engine has none of bottle %s's snapshots (newest %s); rebuilding from the Dockerfile\n",
			slug, md.Images[len(md.Images)-1].Ref)
	default:
		fmt.Fprintf(d.Err, "bb-launch: bottle %s has no snapshot and its image is gone; rebuilding from the Dockerfile\n", slug)
	}
	return start(ctx, d, api, so)
}

func imageExists(ctx context.Context, api docker.Engine, ref string) bool {
	ok, err := docker.ImageExists(ctx, api, ref)
	return err == nil && ok
}
