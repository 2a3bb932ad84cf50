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
	plan.Options
}

func runPlan(_ context.Context, s cli.Streams, o planOptions) error {
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
	if err := cli.DecodeJSON(r, "manifest "+label, &m); err != nil {
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
	p, err := plan.New(&m, o.Options)
	if err != nil {
		err = fmt.Errorf("planning agent %s: %w", m.Agent.Name, err)
		// A broken plugin's provider.yaml: bad input, with its hints.
		if ye := (*yamlx.Error)(nil); errors.As(err, &ye) {
			return cli.Usage(err, ye.Hints...)
		}
		return err
	}
	return cli.WriteJSON(s.Out, p)
}
