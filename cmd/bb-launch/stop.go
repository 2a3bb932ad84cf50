package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/state"
	"github.com/bb-bottles/bb/lib/trust"
)

func stopCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "stop",
		Usage:     "remove a bottle's containers and networks (--rm: the whole bottle)",
		ArgsUsage: "SLUG",
		Description: "Removes the bottle's containers and networks; a stopped bottle is stopped again\n" +
			"without error. What stays, for 'bb-launch resume': its state (plan, routes, CA, audit log),\n" +
			"its snapshots, and its own git repository (the agent's commits).\n\n" +
			"--rm removes the whole bottle: all of that too. The agent's branches are brought into the\n" +
			"workspace's repository first (bb-launch fetch), so that no commit of its is lost; a\n" +
			"workspace that is gone, or is no repository, is said, and the rest removed.\n\n" +
			cli.Examples("bb-launch stop demo-x1y2", "bb-launch stop --rm demo-x1y2"),
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "rm", Usage: "remove the whole bottle: state, audit log, snapshots, its git repository (after fetching its branches)"},
		},
		Action: slugActionOf(false, func(c *ucli.Context, d *deps, slug string) error {
			return runStop(c.Context, d, stopOptions{Slug: slug, Remove: c.Bool("rm")})
		}),
	}
}

type stopOptions struct {
	Slug   string
	Remove bool
}

func runStop(ctx context.Context, d *deps, o stopOptions) error {
	if !d.store.Exists(o.Slug) {
		return stopOrphan(ctx, d, o.Slug)
	}
	b, _, err := d.bottleBackend(ctx, o.Slug)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := backend.StopLocked(ctx, b, d.store, o.Slug); err != nil {
		return err
	}
	// What the agent left that git on the host would run: repositories
	// nested in the workspace are the agent's whole (its own is not).
	if ld, err := backend.ReadLaunched(d.store, o.Slug); err == nil && ld.Workspace != "" {
		if note := backend.NestedRepos(ld.Workspace); note != "" {
			fmt.Fprintf(d.Err, "bb-launch: note: %s\n", note)
		}
	}
	if o.Remove {
		return removeBottle(ctx, d, b, o.Slug)
	}
	fmt.Fprintf(d.Err, "bb-launch: bottle %s stopped; 'bb-launch resume %s' boots it again\n", o.Slug, o.Slug)
	return nil
}

// stopOrphan stops a bottle whose state is gone (removed by hand, another
// state folder, a launch that lost it): what any backend still has of it
// is found by its labels. No lock: it would make a folder for a bottle that
// has none. A slug no backend knows anything of is no bottle (exit 2), as
// when no backend can be asked.
func stopOrphan(ctx context.Context, d *deps, slug string) error {
	missing := cli.Usage(&state.NotFoundError{Slug: slug, Dir: d.store.Dir}, lsHint)
	found := false
	for _, name := range backend.Names() {
		b, err := d.backend(ctx, name)
		if err != nil {
			continue
		}
		defer b.Close()
		s, err := b.Status(ctx, slug)
		if err != nil {
			return err
		}
		if !s.Leftovers {
			continue
		}
		if !found {
			fmt.Fprintf(d.Err, "bb-launch: warning: bottle %s has no state in %s; removing its containers and networks by their labels\n",
				slug, d.store.Dir)
		}
		found = true
		if err := b.Stop(ctx, slug); err != nil {
			return fmt.Errorf("stopping bottle %s: %w", slug, err)
		}
	}
	if !found {
		return missing
	}
	return nil
}

// removeBottle removes a stopped bottle whole: its branches are fetched
// into the workspace's repository first, then the backend removes what it
// keeps (its repository, its snapshots), and the state folder goes, with
// the empty .git bb made in the workspace.
func removeBottle(ctx context.Context, d *deps, b backend.Backend, slug string) error {
	if _, ok := b.(backend.GitExporter); ok {
		refs, err := fetchAgent(ctx, d, slug, "")
		switch {
		case err == nil && len(refs) > 0:
			fmt.Fprintf(d.Err, "bb-launch: bottle %s's branches are in the workspace's repository as %s*\n", slug, backend.FetchedRefs(slug))
		case err != nil && (errors.Is(err, backend.ErrNoAgentRepo) || errors.Is(err, fs.ErrNotExist)):
		case err != nil && cli.CodeOf(err) == cli.ExitUsage:
			// No repository to fetch into, or a workspace gone: nothing
			// to bring in to.
			fmt.Fprintf(d.Err, "bb-launch: bottle %s's git repository is removed without fetching it: %v\n", slug, err)
		case err != nil:
			return cli.WithHint(fmt.Errorf("keeping bottle %s: its branches could not be brought in: %w", slug, err),
				fmt.Sprintf("'bb-launch fetch %s --bundle FILE' saves them; then remove it again", slug))
		}
	}
	if r, ok := b.(backend.Remover); ok {
		if err := r.Remove(ctx, slug); err != nil {
			return err
		}
	}
	ld, _ := backend.ReadLaunched(d.store, slug)
	// Its folder stays the agent's writing (a launch remembers it too;
	// this is for a bottle launched before that).
	if err := trust.Open(d.store.Dir).Remember(ld.Workspace); err != nil {
		return cli.Backend(err)
	}
	if err := d.store.Remove(slug); err != nil {
		return cli.Backend(err)
	}
	if ld.MadeGitDir && ld.Workspace != "" {
		os.Remove(filepath.Join(ld.Workspace, ".git")) // only if still empty
	}
	fmt.Fprintf(d.Err, "bb-launch: bottle %s stopped and removed\n", slug)
	return nil
}
