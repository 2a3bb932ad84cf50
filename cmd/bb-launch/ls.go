package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/mattn/go-isatty"
	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/backend/docker"
	"github.com/bb-bottles/bb/lib/cli"
)

func lsCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "ls",
		Usage: "list the bottles, with their live status",
		Description: "Prints the bottles of the state directory, oldest first, as a JSON array of\n" +
			"{\"slug\",\"agent\",\"template\",\"label\",\"color\",\"backend\",\"created\",\"preserved\",\n" +
			"\"status\",\"agent_container\",\"images\"}; status is running (the agent runs), stopped (its\n" +
			"container has exited), missing (the engine has no container for it: stopped, or never\n" +
			"started here; resume boots it) or unknown (no engine, or another backend). --format table\n" +
			"is for people, and the default on a terminal.\n\n" +
			cli.Examples("bb-launch ls", "bb-launch ls --format json | jq -r '.[] | select(.status == \"running\") | .slug'"),
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "format", Usage: "`json` or table (default: table on a terminal, else json)"},
			&ucli.BoolFlag{Name: "json", Usage: "the same as --format json"},
		},
		Action: func(c *ucli.Context) error {
			if c.NArg() > 0 {
				return usageErr(c, fmt.Errorf("ls takes no arguments, got %q", c.Args().First()))
			}
			d, err := newDeps(c)
			if err != nil {
				return err
			}
			format := c.String("format")
			if c.Bool("json") {
				format = "json"
			}
			return runLs(c.Context, d, lsOptions{Format: format})
		},
	}
}

type lsOptions struct {
	Format string // json, table, or "" for the default
}

func runLs(ctx context.Context, d *deps, o lsOptions) error {
	switch o.Format {
	case "":
		o.Format = "json"
		if f, ok := d.Out.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			o.Format = "table"
		}
	case "json", "table":
	default:
		return cli.Usagef("bad --format %q: want json or table", o.Format)
	}
	var api docker.Engine
	if c, err := d.engine(ctx); err != nil {
		fmt.Fprintf(d.Err, "bb-launch: warning: the status is unknown: %v\n", err)
	} else {
		defer c.Close()
		api = c
	}
	list, err := docker.List(ctx, api, d.store)
	if list == nil && err != nil {
		return err
	}
	if err != nil {
		fmt.Fprintf(d.Err, "bb-launch: warning: %v\n", err)
	}
	if o.Format == "json" {
		return cli.WriteJSON(d.Out, list)
	}
	tw := tabwriter.NewWriter(d.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SLUG\tAGENT\tTEMPLATE\tLABEL\tSTATUS\tPRESERVED\tIMAGES\tCREATED")
	for _, b := range list {
		preserved := "no"
		if b.Preserved {
			preserved = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", b.Slug, b.Agent, b.Template, b.Label, b.Status,
			preserved, b.Images, b.Created.Local().Format(time.DateTime))
	}
	return tw.Flush()
}
