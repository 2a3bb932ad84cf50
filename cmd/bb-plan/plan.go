package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/provider"
	"github.com/bb-bottles/bb/lib/yamlx"
)

type planOptions struct {
	// Manifest is the file to read; "" or "-" is stdin.
	Manifest string
	// Ask asks a person for the label and colour the options leave open,
	// when one can be asked (see ask).
	Ask bool
	plan.Options
}

func runPlan(ctx context.Context, s cli.Streams, o planOptions) error {
	// The flags are checked first: a mistyped flag should not cost a
	// manifest read from a pipe.
	if err := o.Check(); err != nil {
		return cli.WithHint(err)
	}
	r, label, err := cli.Open(s, o.Manifest)
	if err != nil {
		return err
	}
	defer r.Close()
	var m manifest.Manifest
	if err := cli.DecodeDoc(r, label, manifest.Kind, &m); err != nil {
		return err
	}
	if err := plan.CheckManifest(&m); err != nil {
		err = fmt.Errorf("reading manifest %s: %w", label, err)
		if m.Kind != manifest.Kind {
			return cli.Usage(err, "bb-plan reads what bb-manifest prints: bb-manifest AGENT | bb-plan")
		}
		return cli.Usage(err)
	}
	o.PluginDir = provider.ConfigDir(s.Env)
	o.Env = s.Env
	p, err := plan.New(&m, o.Options)
	if err != nil {
		err = fmt.Errorf("planning agent %s: %w", m.Agent.Name, err)
		// A broken plugin's provider.yaml: bad input, with its hints.
		if ye := (*yamlx.Error)(nil); errors.As(err, &ye) {
			return cli.Usage(err, ye.Hints...)
		}
		return planError(err)
	}
	if o.Ask {
		// Asked once the plan is known to be good: no question is wasted
		// on a manifest that fails, and the default colour is the plan's.
		q, asked, err := ask(ctx, s, p, o.Options)
		if err != nil {
			return err
		}
		if asked {
			if p, err = plan.New(&m, q); err != nil {
				return planError(fmt.Errorf("planning agent %s: %w", m.Agent.Name, err))
			}
		}
	}
	return cli.WriteJSON(s.Out, p)
}

// planError classifies an error of planning that is not yet: planning is
// pure, so what fails it is what it was given (the manifest, a plugin, a
// file they name), bad input.
func planError(err error) error {
	if e := (*cli.Error)(nil); errors.As(err, &e) {
		return err
	}
	return cli.Usage(err)
}
