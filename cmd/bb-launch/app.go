package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/backend"
	_ "github.com/bb-bottles/bb/lib/backend/all"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/state"
)

func newApp() *ucli.App {
	return &ucli.App{
		Name:      "bb-launch",
		Usage:     "start a bottle from a plan, and list, attach to, exec in, stop, resume and reload bottles",
		UsageText: "bb-launch [--detach] [PLAN.json | -]\n   bb-launch COMMAND SLUG ...",
		Description: "Reads a plan (bb-plan's output) from the file or stdin and starts the bottle on the Docker\n" +
			"engine: its networks, its state folder, the egress sidecar (the only holder of the token\n" +
			"values, read here from the host), and the agent. On a terminal (/dev/tty) it attaches to\n" +
			"the agent and stops the bottle when the agent exits, passing its exit status through;\n" +
			"with --detach, or with no terminal, it prints the launch record\n" +
			"{\"slug\",\"backend\",\"agent_container\",\"sidecar_container\",\"agent_image\",\"sidecar_image\"}.\n" +
			"A failure at any step, Ctrl-C or a closed terminal removes what the launch created.\n\n" +
			"The workspace (the plan's, or the current folder) is mounted read-write, so it is refused\n" +
			"when it is /, your home folder, or holds bb's state or configuration, a token file or the\n" +
			"Docker socket. A bottle's Dockerfile and build context must lie outside it (the agent could\n" +
			"change them, and they run at the next launch); the context honours .dockerignore and may\n" +
			"hold no token file. In a git workspace the agent commits to a repository of its own, seeded\n" +
			"from yours, which stays read-only to it; 'bb-launch fetch SLUG' brings its branches in.\n\n" +
			"BB_BASE_IMAGE sets the agent Dockerfile's BASE (e.g. bb-base:bookworm, the offline base).\n\n" +
			cli.Examples(
				"bb-manifest demo | bb-plan | bb-launch",
				"bb-manifest demo | bb-plan | bb-launch --detach | jq -r .slug",
				"bb-launch exec demo-x1y2 -- git status",
				"bb-launch ls --format table",
			),
		HideHelpCommand: true,
		Flags:           launchFlags(),
		Action:          launchAction,
		Commands: []*ucli.Command{
			lsCommand(),
			attachCommand(),
			execCommand(),
			stopCommand(),
			resumeCommand(),
			reloadCommand(),
			fetchCommand(),
		},
	}
}

// deps are what every subcommand needs: the streams, the state and,
// opened on use, the bottles' backends.
type deps struct {
	cli.Streams
	store *state.Store
}

func newDeps(c *ucli.Context) (*deps, error) {
	s := cli.StreamsOf(c)
	st, err := state.Open(s.Env)
	if err != nil {
		return nil, cli.Usage(err)
	}
	return &deps{Streams: s, store: st}, nil
}

// backend opens the backend called name (a plan's, or a bottle's
// metadata's).
func (d *deps) backend(ctx context.Context, name string) (backend.Backend, error) {
	return backend.Open(ctx, name, backend.Config{Env: d.Env, Environ: d.Environ, Store: d.store})
}

// bottleBackend opens the backend bottle slug runs on, as its metadata
// says.
func (d *deps) bottleBackend(ctx context.Context, slug string) (backend.Backend, state.Metadata, error) {
	md, err := d.store.ReadMetadata(slug)
	if err != nil {
		return nil, md, cli.Usage(err)
	}
	b, err := d.backend(ctx, md.Backend)
	return b, md, err
}

// bottle checks slug and that the bottle exists.
func (d *deps) bottle(slug string) error {
	if slug == "" {
		return cli.Usage(errors.New("missing the bottle's SLUG"), lsHint)
	}
	if err := state.CheckSlug(slug); err != nil {
		return cli.Usage(err, lsHint)
	}
	if !d.store.Exists(slug) {
		return cli.Usage(&state.NotFoundError{Slug: slug, Dir: d.store.Dir}, lsHint)
	}
	return nil
}

const lsHint = "run 'bb-launch ls' to list the bottles"

// errHelpShown ends an action that printed its help instead.
var errHelpShown = cli.ErrHelpShown

// positional parses flags interspersed with the arguments (cli.Positional).
func positional(c *ucli.Context) ([]string, error) { return cli.Positional(c) }

func usageErr(c *ucli.Context, err error) error {
	return cli.Usage(err, "run 'bb-launch "+c.Command.Name+" --help' for usage")
}

// slugAction is the action of a subcommand taking exactly one SLUG (and
// flags before or after it) of a bottle that exists.
func slugAction(run func(c *ucli.Context, d *deps, slug string) error) ucli.ActionFunc {
	return slugActionOf(true, run)
}

// slugActionOf is slugAction; a bottle without state passes when
// needState is false (stop clears what a lost state left on the engine).
func slugActionOf(needState bool, run func(c *ucli.Context, d *deps, slug string) error) ucli.ActionFunc {
	return func(c *ucli.Context) error {
		args, err := positional(c)
		if errors.Is(err, errHelpShown) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(args) != 1 {
			return usageErr(c, fmt.Errorf("want one SLUG, got %d arguments", len(args)))
		}
		d, err := newDeps(c)
		if err != nil {
			return err
		}
		if err := d.bottle(args[0]); err != nil && (needState || !errors.Is(err, fs.ErrNotExist)) {
			return err
		}
		return run(c, d, args[0])
	}
}

func executable() string {
	exe, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return exe
}
