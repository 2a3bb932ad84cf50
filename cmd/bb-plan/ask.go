package main

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/terminal"
)

// askHelp describes --ask in the command's help.
const askHelp = "--ask asks a person for the label and colour that --label and --color leave open, on the\n" +
	"terminal (/dev/tty), if bb-plan's stderr is a terminal and /dev/tty opens; otherwise nothing\n" +
	"is asked and the defaults stand (stdin is not looked at: it carries the manifest). The label\n" +
	"is pre-filled with the agent's name: Enter keeps it, the first key typed replaces it,\n" +
	"Backspace edits it. The colour is picked from the palette with the arrows or its number,\n" +
	"Enter picks; the plan's own colour comes first. Ctrl-C cancels (exit 130)."

// canAsk reports whether a person can be asked: bb-plan's stderr is a
// terminal — the person who ran it watches it; when it is redirected to a
// file or a pipe, bb-plan runs for a program — and the controlling terminal
// opens. It returns that terminal, to ask on.
func canAsk(s cli.Streams) (*terminal.Terminal, bool) {
	if !terminal.IsTerminal(s.Err) {
		return nil, false
	}
	t, err := terminal.Open()
	if err != nil {
		return nil, false
	}
	return t, true
}

// ask asks for what o leaves open of p's label and colour, and returns the
// options that plan the answers: p's slug and canary (so that only the
// answers change), and the label and colour chosen. asked is false when
// nothing was asked.
func ask(ctx context.Context, s cli.Streams, p *plan.Plan, o plan.Options) (_ plan.Options, asked bool, err error) {
	if o.Label != "" && o.Color != "" {
		return o, false, nil
	}
	t, ok := canAsk(s)
	if !ok {
		return o, false, nil
	}
	defer t.Close()
	depth := terminal.EnvDepth(s.Env)
	pr, err := terminal.NewPrompter(ctx, t, depth)
	if err != nil {
		return o, false, err
	}
	defer pr.Close()
	o.Slug, o.Canary = p.Slug, p.Canary
	if o.Label == "" {
		if o.Label, err = pr.Label("Label", p.Label); err != nil {
			return o, false, askError("the label", "--label", err)
		}
	}
	if o.Color == "" {
		choices := make([]terminal.Choice, len(plan.Palette))
		for i, name := range plan.Palette {
			c, _ := terminal.ParseRGB(plan.RGB(name))
			choices[i] = terminal.Choice{Name: name, Color: c}
		}
		i, err := pr.Color("Colour for "+o.Label, choices, slices.Index(plan.Palette, p.Color))
		if err != nil {
			return o, false, askError("the colour", "--color", err)
		}
		o.Color = plan.Palette[i]
	}
	return o, true, nil
}

// askError is a question that ended without an answer: Ctrl-C is exit 130,
// as is the context's end (a signal), which Report names "interrupted".
func askError(what, flag string, err error) error {
	if errors.Is(err, terminal.ErrInterrupted) {
		return &cli.Error{Code: cli.ExitInterrupted, Err: fmt.Errorf("asking for %s: %w", what, err)}
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return cli.Usage(fmt.Errorf("asking for %s: %w", what, err), "give it with "+flag)
}
