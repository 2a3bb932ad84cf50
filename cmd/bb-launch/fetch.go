package main

import (
	"context"
	"fmt"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/state"
)

func fetchCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "fetch",
		Usage:     "bring the branches the agent committed into the workspace's repository",
		ArgsUsage: "SLUG",
		Description: "The agent commits to a repository of its own (your .git is read-only to it, so that\n" +
			"nothing it writes there is configuration or hooks your git runs). fetch brings its branches\n" +
			"into your repository as bb/SLUG/BRANCH (refs/remotes/bb/SLUG/...), and prints them as a JSON\n" +
			"list. git on the host gets them as a bundle, checks every object, and runs no hook; your own\n" +
			"branches are not touched. For a workspace that is no repository, --bundle FILE writes them\n" +
			"to FILE ('git clone FILE'). The bottle may be running or stopped.\n\n" +
			cli.Examples("bb-launch fetch demo-x1y2", "git log --oneline main..bb/demo-x1y2/main",
				"bb-launch fetch demo-x1y2 --bundle agent.bundle"),
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "bundle", Usage: "write the agent's branches to `FILE` instead, as a git bundle"},
		},
		Action: slugActionOf(true, func(c *ucli.Context, d *deps, slug string) error {
			return runFetch(c.Context, d, slug, c.String("bundle"))
		}),
	}
}

func runFetch(ctx context.Context, d *deps, slug, bundle string) error {
	refs, err := fetchAgent(ctx, d, slug, bundle)
	if err != nil {
		return err
	}
	switch {
	case bundle != "":
		fmt.Fprintf(d.Err, "bb-launch: bottle %s's branches are in %s\n", slug, bundle)
	case len(refs) == 0:
		fmt.Fprintf(d.Err, "bb-launch: bottle %s has no branch to bring in\n", slug)
	default:
		fmt.Fprintf(d.Err, "bb-launch: bottle %s's branches are in %s*\n", slug, backend.FetchedRefs(slug))
	}
	if refs == nil {
		refs = []string{}
	}
	return cli.WriteJSON(d.Out, refs)
}

// fetchAgent brings a bottle's branches in, under its lock.
func fetchAgent(ctx context.Context, d *deps, slug, bundle string) ([]string, error) {
	raw, err := d.store.ReadPlan(slug)
	if err != nil {
		return nil, cli.Usage(err)
	}
	p, err := decodePlan(raw, d.store.BottleDir(slug)+"/"+state.PlanFile)
	if err != nil {
		return nil, err
	}
	b, _, err := d.bottleBackend(ctx, slug)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	unlock, err := d.store.Lock(ctx, slug)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return backend.FetchGit(ctx, b, d.store, p, bundle)
}
