package main

import (
	"context"
	"errors"
	"fmt"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/terminal"
)

func attachCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "attach",
		Usage:     "attach the terminal to a running bottle's agent",
		ArgsUsage: "SLUG",
		Description: "Joins the terminal (/dev/tty) to the agent. Ctrl-P Ctrl-Q leaves it running; when\n" +
			"the agent exits the bottle stops (unless preserved) and its exit status is passed through.\n" +
			"While attached, the terminal's title is \"LABEL (AGENT) — SLUG\" and its background and a few\n" +
			"palette entries are tinted in the bottle's colour (not with NO_COLOR; nothing at all with\n" +
			"TERM=dumb); all are reset when the session ends, however it ends (OSC 104, 110, 111).\n\n" +
			cli.Examples("bb-launch attach demo-x1y2"),
		Action: slugAction(func(c *ucli.Context, d *deps, slug string) error {
			return runAttach(c.Context, d, slug)
		}),
	}
}

func runAttach(ctx context.Context, d *deps, slug string) error {
	term, err := terminal.Open()
	if errors.Is(err, terminal.ErrNoTerminal) {
		return cli.Usage(fmt.Errorf("attaching to bottle %s: %w", slug, err),
			"run it from a terminal, or use 'bb-launch exec "+slug+" -- CMD' from scripts")
	}
	if err != nil {
		return cli.Usage(err)
	}
	defer term.Close()
	b, _, err := d.bottleBackend(ctx, slug)
	if err != nil {
		return err
	}
	defer b.Close()
	a, ok := b.(backend.Attacher)
	if !ok {
		return backend.Unsupported(b.Name(), "attach a terminal", "use 'bb-launch exec "+slug+" -- CMD'")
	}
	s, err := a.Attach(ctx, slug)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.Err, "bb-launch: attached to bottle %s (Ctrl-P Ctrl-Q leaves it running)\n", slug)
	return attached(ctx, d, b, s, term, slug)
}

// tint marks the person's terminal as the bottle's while attached (see
// terminal.Tint): the title "label (agent) — slug", and the bottle's colour
// unless NO_COLOR is set; nothing on a dumb terminal. The function returned
// resets it all, once however often it is called: attached calls it when
// the session ends however it ends (the agent's exit, a detach, an error,
// Ctrl-C or SIGTERM cancelling ctx), and defers it against a panic.
func tint(d *deps, term *terminal.Terminal, slug string) (untint func()) {
	if d.Env("TERM") == "dumb" {
		return func() {}
	}
	t := terminal.Tint{Title: slug}
	if md, err := d.store.ReadMetadata(slug); err == nil {
		t.Title = backend.Display(md.Label, md.Agent) + " — " + slug
		t.Color, t.Colors = terminal.ParseRGB(plan.RGB(md.Color))
	}
	if terminal.EnvDepth(d.Env) == terminal.NoColor {
		t.Colors = false
	}
	reset := term.Tint(t)
	return func() { reset() } //nolint:errcheck // the terminal is going away or being restored
}
