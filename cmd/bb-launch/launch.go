package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/terminal"
)

func launchFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "start the bottle and print its launch record, without attaching"},
		&ucli.StringFlag{Name: "upstream-ca", Usage: "also trust the CA certificates in `FILE` upstream, in the sidecar (tests, the demo)"},
		&ucli.BoolFlag{Name: "allow-private", Usage: "let the sidecar's routes reach private (RFC 1918) addresses, for upstreams on private networks, e.g. the offline demo; kept on resume"},
		&ucli.StringSliceFlag{Name: "build-arg", Usage: "a `KEY=VALUE` build argument for the agent image (e.g. INSTALL_CLI=0)"},
	}
}

type launchOptions struct {
	Plan       string // file, "-" or "" for stdin
	Detach     bool
	UpstreamCA string
	// AllowPrivate is passed to the sidecar as --allow-private.
	AllowPrivate bool
	BuildArgs    map[string]string
}

func launchAction(c *ucli.Context) error {
	if c.NArg() > 1 {
		return cli.Usage(fmt.Errorf("want at most one plan file, got %d arguments", c.NArg()),
			"run 'bb-launch --help' for usage")
	}
	args, err := buildArgs(c.StringSlice("build-arg"))
	if err != nil {
		return err
	}
	d, err := newDeps(c)
	if err != nil {
		return err
	}
	return runLaunch(c.Context, d, launchOptions{Plan: c.Args().First(), Detach: c.Bool("detach"),
		UpstreamCA: c.String("upstream-ca"), AllowPrivate: c.Bool("allow-private"), BuildArgs: args})
}

func buildArgs(list []string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, cli.Usagef("bad --build-arg %q: want KEY=VALUE", kv)
		}
		m[k] = v
	}
	return m, nil
}

func runLaunch(ctx context.Context, d *deps, o launchOptions) error {
	r, label, err := cli.Open(d.Streams, o.Plan)
	if err != nil {
		return err
	}
	raw, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		return cli.Usage(fmt.Errorf("reading %s: %w", label, err))
	}
	p, err := decodePlan(raw, label)
	if err != nil {
		return err
	}
	b, err := d.backend(ctx, p.Backend)
	if err != nil {
		return err
	}
	defer b.Close()
	return start(ctx, d, b, startOptions{plan: p, planJSON: raw, launchOptions: o},
		func(ctx context.Context, lo backend.LaunchOptions) (*backend.Record, error) {
			return backend.Launch(ctx, b, lo)
		})
}

// decodePlan decodes a plan strictly and checks that it can launch here.
func decodePlan(raw []byte, label string) (*plan.Plan, error) {
	var p plan.Plan
	if err := cli.DecodeDoc(strings.NewReader(string(raw)), label, plan.Kind, &p); err != nil {
		return nil, err
	}
	if p.Kind != plan.Kind {
		return nil, cli.Usage(fmt.Errorf("reading %s: kind is %q, want %q", label, p.Kind, plan.Kind),
			"bb-launch takes bb-plan's output: bb-manifest AGENT | bb-plan | bb-launch")
	}
	if p.Version != plan.Version {
		return nil, cli.Usagef("reading %s: version is %d, want %d", label, p.Version, plan.Version)
	}
	return &p, nil
}

type startOptions struct {
	launchOptions
	plan     *plan.Plan
	planJSON []byte
}

// start launches (or resumes) a bottle with launch, then attaches the
// terminal to it or prints its launch record.
func start(ctx context.Context, d *deps, b backend.Backend, o startOptions,
	launch func(context.Context, backend.LaunchOptions) (*backend.Record, error)) error {
	var term *terminal.Terminal
	if !o.Detach {
		t, err := terminal.Open()
		switch {
		case errors.Is(err, terminal.ErrNoTerminal):
		case err != nil:
			return cli.Usage(err, "use --detach to start the bottle without a terminal")
		default:
			term = t
			defer term.Close()
		}
	}
	lo := backend.LaunchOptions{
		Plan: o.plan, PlanJSON: o.planJSON, Store: d.store,
		BaseImage: d.Env("BB_BASE_IMAGE"), BuildArgs: o.BuildArgs,
		UpstreamCA: o.UpstreamCA, AllowPrivate: o.AllowPrivate, Env: d.Env,
		UID: os.Getuid(), GID: os.Getgid(), Progress: d.Err,
		// Opened before the agent starts, so nothing it prints first is
		// lost; a launch that fails closes it.
		Attach:  term != nil,
		Confirm: d.confirm(),
	}
	// A plan the backend refuses is said before the rest is looked for.
	if err := backend.Check(b, lo); err != nil {
		return err
	}
	bin, err := backend.SidecarBinary(executable())
	if err != nil {
		return err
	}
	wd, err := os.Getwd()
	if err != nil {
		return cli.Usage(fmt.Errorf("finding the current folder: %w", err))
	}
	lo.SidecarBinary, lo.Dir = bin, wd
	if d.Env("BB_LAUNCH_TRACE") != "" {
		lo.Trace = d.Err
	}
	rec, err := launch(ctx, lo)
	if err != nil {
		return err
	}
	if term == nil {
		fmt.Fprintf(d.Err, "bb-launch: bottle %s is running; 'bb-launch attach %s' joins it, 'bb-launch stop %s' ends it\n",
			rec.Slug, rec.Slug, rec.Slug)
		return cli.WriteJSON(d.Out, rec)
	}
	return attached(ctx, d, b, rec.Session, term, rec.Slug)
}

// attached runs an attached session to its end: a detach leaves the bottle
// running; the agent's exit, or ctx being done, stops it unless it is
// preserved (bb-freeze), and the agent's status is passed through.
func attached(ctx context.Context, d *deps, b backend.Backend, s backend.Session, term *terminal.Terminal, slug string) error {
	untint := tint(d, term, slug)
	defer untint()
	code, detached, err := s.Run(ctx, term)
	untint()
	term.Restore()
	if detached && err == nil {
		fmt.Fprintf(d.Err, "\r\nbb-launch: detached from bottle %s; 'bb-launch attach %s' joins it again\n", slug, slug)
		return nil
	}
	md, merr := d.store.ReadMetadata(slug)
	if merr == nil && md.Preserved {
		fmt.Fprintf(d.Err, "bb-launch: bottle %s is preserved; its container stays ('bb-launch resume %s')\n", slug, slug)
	} else {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if serr := backend.StopLocked(sctx, b, d.store, slug); serr != nil && err == nil {
			err = serr
		}
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return cli.Exit(code)
	}
	return nil
}
