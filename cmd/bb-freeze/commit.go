package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/freeze"
	"github.com/bb-bottles/bb/lib/state"
)

type commitOptions struct {
	slug string // "" to pick one, or with all
	all  bool
	keep int  // 0 keeps every snapshot
	stop bool // agree to stop bottles whose backend must stop them to commit
}

func commitCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "commit",
		Usage:     "snapshot a bottle (or --all running bottles) as bb/<slug>:<UTC time>",
		ArgsUsage: "[SLUG]",
		Description: "Commits the bottle's agent container as bb/<slug>:<UTC time>, moves bb/<slug>:latest to\n" +
			"it, records it in the bottle's metadata and marks the bottle preserved. On Docker\n" +
			"the container is only paused for the commit. Apple container and smolvm bottles must\n" +
			"be stopped (and are started again): a person is asked, or --stop agrees beforehand.\n" +
			"A failed commit leaves the previous snapshot and the metadata as they were.\n\n" +
			"Prints the record as JSON: {\"slug\",\"image\",\"id\",\"tags\",\"created\",\"backend\",\"removed\"}.\n" +
			"With no SLUG, a terminal shows a list of the running bottles to pick from; without a\n" +
			"terminal it is an error that lists them. --all commits every running bottle, one JSON\n" +
			"line each ({\"slug\",\"backend\",\"error\"} for one that failed), and exits 3 if any failed.\n\n" +
			cli.Examples(
				"bb-freeze commit my-bottle-1a2b",
				"bb-freeze commit                                   # pick from the running bottles",
				"bb-freeze commit --keep 3 my-bottle-1a2b           # and keep only the 3 newest",
				"0 * * * * bb-freeze commit --all --keep 24 --stop  # crontab: hourly, a day's worth",
				"bb-freeze commit my-bottle-1a2b | jq -r .image",
			),
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "all", Usage: "commit every running bottle"},
			&ucli.IntFlag{Name: "keep", Usage: "remove older snapshots beyond the `N` newest (0: keep all)"},
			&ucli.BoolFlag{Name: "stop", Usage: "agree to stop (and restart) bottles whose backend cannot commit a running one"},
		},
		Action: func(c *ucli.Context) error {
			args, err := checkArgs(c, 1, "[SLUG]")
			if err != nil {
				return err
			}
			opts := commitOptions{all: c.Bool("all"), keep: c.Int("keep"), stop: c.Bool("stop")}
			if len(args) == 1 {
				opts.slug = args[0]
			}
			if err := opts.check(); err != nil {
				return err
			}
			d, err := newDeps(cli.StreamsOf(c))
			if err != nil {
				return err
			}
			return runCommit(c.Context, d, opts)
		},
	}
}

func (o commitOptions) check() error {
	if o.all && o.slug != "" {
		return cli.Usage(errors.New("--all and a SLUG given"), "commit one bottle (SLUG) or every running one (--all)")
	}
	if o.keep < 0 {
		return cli.Usagef("bad --keep %d: want 0 (keep all) or more", o.keep)
	}
	if o.slug != "" {
		if err := state.CheckSlug(o.slug); err != nil {
			return cli.Usage(fmt.Errorf("bad SLUG: %w", err), "bb-launch ls lists the bottles")
		}
	}
	return nil
}

// failure is the line --all prints for a bottle that could not be
// committed: its slug, its backend and the error.
type failure struct {
	Slug    string `json:"slug"`
	Backend string `json:"backend"`
	Error   string `json:"error"`
}

// errCancelled is a person's "no": nothing is done, and that is success.
var errCancelled = errors.New("cancelled")

func runCommit(ctx context.Context, d *deps, opts commitOptions) error {
	if err := opts.check(); err != nil {
		return err
	}
	if opts.all {
		return commitAll(ctx, d, opts)
	}
	var md state.Metadata
	if opts.slug == "" {
		var err error
		if md, err = pick(ctx, d); err != nil {
			return cancelled(d, err)
		}
	} else {
		var err error
		md, err = d.st.ReadMetadata(opts.slug)
		if errors.Is(err, fs.ErrNotExist) {
			return cli.Usage(fmt.Errorf("committing: %w", err), "bb-launch ls lists the bottles")
		}
		if err != nil {
			return cli.Usage(fmt.Errorf("committing: %w", err))
		}
	}
	rec, err := commitOne(ctx, d, md, opts)
	if err != nil {
		return cancelled(d, err)
	}
	return cli.WriteJSON(d.s.Out, rec)
}

// cancelled turns a person's refusal into success, said on stderr.
func cancelled(d *deps, err error) error {
	if errors.Is(err, errCancelled) {
		fmt.Fprintln(d.s.Err, "bb-freeze: cancelled: nothing committed")
		return nil
	}
	return err
}

// commitOne commits one bottle, asking first when its backend stops it.
func commitOne(ctx context.Context, d *deps, md state.Metadata, opts commitOptions) (freeze.Record, error) {
	f, err := d.bottleFreezer(ctx, md)
	if err != nil {
		return freeze.Record{}, err
	}
	if f.NeedsStop() && !opts.stop {
		if err := askStop(d, md, f.Backend()); err != nil {
			return freeze.Record{}, err
		}
	}
	rec, err := freeze.Commit(ctx, d.st, f, md.Slug, freeze.Options{
		Keep:   opts.keep,
		Labels: d.labels,
		Now:    d.now,
		Warn: func(format string, a ...any) {
			fmt.Fprintf(d.s.Err, "bb-freeze: warning: bottle %s: %s\n", md.Slug, fmt.Sprintf(format, a...))
		},
	})
	if err != nil {
		return freeze.Record{}, err
	}
	fmt.Fprintf(d.s.Err, "bb-freeze: committed bottle %s as %s", md.Slug, rec.Image)
	if len(rec.Removed) > 0 {
		fmt.Fprintf(d.s.Err, " (removed %d older: %s)", len(rec.Removed), strings.Join(rec.Removed, ", "))
	}
	fmt.Fprintf(d.s.Err, "\nresume it with: bb resume %s\n", md.Slug)
	return rec, nil
}

// askStop asks the person whether bottle md may be stopped for its commit.
func askStop(d *deps, md state.Metadata, backend string) error {
	tty, err := d.terminal()
	if err != nil {
		return cli.Usage(fmt.Errorf("bottle %s runs on %s, which must stop it to commit it, and there is no terminal to ask", md.Slug, backend),
			"pass --stop to agree to stopping (and restarting) it")
	}
	defer tty.Close()
	fmt.Fprintf(d.s.Err, "bottle %s (%s) runs on %s: committing stops it and starts it again; what runs in it is ended.\nstop it and commit? [y/N] ",
		md.Slug, label(md), backend)
	answer, err := readLine(tty)
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	switch strings.ToLower(answer) {
	case "y", "yes":
		return nil
	}
	return errCancelled
}

// pick asks the person which running bottle to commit, or, with no
// terminal, fails listing them.
func pick(ctx context.Context, d *deps) (state.Metadata, error) {
	mds, err := running(ctx, d)
	if err != nil {
		return state.Metadata{}, err
	}
	if len(mds) == 0 {
		return state.Metadata{}, cli.Usage(errors.New("no SLUG given, and no bottle is running"), "bb-launch ls lists the bottles")
	}
	tty, err := d.terminal()
	if err != nil {
		slugs := make([]string, len(mds))
		for i, md := range mds {
			slugs[i] = md.Slug
		}
		return state.Metadata{}, cli.Usage(fmt.Errorf("no SLUG given; running bottles: %s", strings.Join(slugs, " ")),
			"bb-freeze commit SLUG commits one, bb-freeze commit --all every one")
	}
	defer tty.Close()
	fmt.Fprintln(d.s.Err, "running bottles:")
	for i, md := range mds {
		fmt.Fprintf(d.s.Err, "  %d) %s  %s\n", i+1, md.Slug, label(md))
	}
	fmt.Fprintf(d.s.Err, "commit which? [1-%d, empty to cancel] ", len(mds))
	answer, err := readLine(tty)
	if err != nil {
		return state.Metadata{}, fmt.Errorf("reading the answer: %w", err)
	}
	if answer == "" {
		return state.Metadata{}, errCancelled
	}
	n, err := strconv.Atoi(answer)
	if err != nil || n < 1 || n > len(mds) {
		return state.Metadata{}, cli.Usagef("no bottle numbered %q: want 1 to %d", answer, len(mds))
	}
	return mds[n-1], nil
}

func label(md state.Metadata) string {
	if md.Label != "" {
		return md.Label
	}
	return md.Agent
}

// readLine reads one line, without its end; end of input is an empty line.
func readLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// running returns the bottles in the state whose backend runs them now.
func running(ctx context.Context, d *deps) ([]state.Metadata, error) {
	mds, err := d.st.List()
	if err != nil {
		fmt.Fprintf(d.s.Err, "bb-freeze: warning: %v\n", err)
	}
	live := map[string]map[string]bool{} // backend -> running slugs
	var out []state.Metadata
	for _, md := range mds {
		slugs, ok := live[md.Backend]
		if !ok {
			f, err := d.bottleFreezer(ctx, md)
			if err != nil {
				return nil, err
			}
			list, err := f.Running(ctx)
			if err != nil {
				return nil, err
			}
			slugs = map[string]bool{}
			for _, s := range list {
				slugs[s] = true
			}
			live[md.Backend] = slugs
		}
		if slugs[md.Slug] {
			out = append(out, md)
		}
	}
	return out, nil
}

// commitAll commits every running bottle, going on past failures.
func commitAll(ctx context.Context, d *deps, opts commitOptions) error {
	mds, err := running(ctx, d)
	if err != nil {
		return err
	}
	if len(mds) == 0 {
		fmt.Fprintln(d.s.Err, "bb-freeze: no bottle is running: nothing to commit")
		return nil
	}
	var failed []string
	for _, md := range mds {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rec, err := commitOne(ctx, d, md, opts)
		if errors.Is(err, errCancelled) {
			fmt.Fprintf(d.s.Err, "bb-freeze: bottle %s: cancelled: not committed\n", md.Slug)
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			cli.Report(d.s.Err, "bb-freeze: bottle "+md.Slug, err)
			failed = append(failed, md.Slug)
			if werr := cli.WriteJSONLine(d.s.Out, failure{Slug: md.Slug, Backend: backend.Of(md), Error: err.Error()}); werr != nil {
				return werr
			}
			continue
		}
		if err := cli.WriteJSONLine(d.s.Out, rec); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return cli.Backend(fmt.Errorf("%d of %d bottles not committed: %s", len(failed), len(mds), strings.Join(failed, " ")))
	}
	return nil
}
