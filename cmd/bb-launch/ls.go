package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/terminal"
)

func lsCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "ls",
		Usage: "list the bottles, with their live status",
		Description: "Prints the bottles of the state directory, oldest first, as a JSON array of\n" +
			"{\"slug\",\"agent\",\"template\",\"label\",\"color\",\"display\",\"backend\",\"created\",\n" +
			"\"preserved\",\"status\",\"exit_code\",\"agent_container\",\"images\"}; display is \"LABEL (AGENT)\",\n" +
			"as plain text; status is running (the agent runs), exited (the agent ended, with exit_code,\n" +
			"and its container is kept with what it holds, as a preserved bottle's is), stopped (its\n" +
			"containers are gone, by bb-launch stop or the agent's end) or unknown (its backend could\n" +
			"not be asked). Whatever the status, the bottle's state, audit log, snapshots and own git\n" +
			"repository stay until 'bb-launch stop --rm'; 'bb-launch resume' boots an exited or\n" +
			"stopped bottle again. --format table is for people, and the\n" +
			"default on a terminal; there each bottle is shown in its colour (24-bit when COLORTERM\n" +
			"is truecolor or 24bit, else 256 colours), and in plain text with NO_COLOR set or TERM=dumb.\n\n" +
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
		if terminal.IsTerminal(d.Out) {
			o.Format = "table"
		}
	case "json", "table":
	default:
		return cli.Usagef("bad --format %q: want json or table", o.Format)
	}
	list, err := backend.List(ctx, d.store, d.backend, func(err error) {
		fmt.Fprintf(d.Err, "bb-launch: warning: %v\n", err)
	})
	if list == nil && err != nil {
		return err
	}
	if err != nil {
		fmt.Fprintf(d.Err, "bb-launch: warning: %v\n", err)
	}
	if o.Format == "json" {
		return cli.WriteJSON(d.Out, list)
	}
	return writeTable(d.Out, list, terminal.ColorDepth(d.Out, d.Env))
}

// writeTable writes the bottles as a table for people, each one's display
// in its colour at depth.
func writeTable(w io.Writer, list []backend.Listed, depth terminal.Depth) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SLUG\tBOTTLE\tTEMPLATE\tSTATUS\tPRESERVED\tIMAGES\tCREATED")
	shown := make([]string, len(list))
	for i, b := range list {
		preserved := "no"
		if b.Preserved {
			preserved = "yes"
		}
		// Cells are the metadata's text: a tab or an escape in a label
		// edited by hand must not break the table or the terminal.
		shown[i] = printable(b.Display)
		status := b.Status
		if b.ExitCode != nil {
			status = fmt.Sprintf("%s (%d)", status, *b.ExitCode)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", printable(b.Slug), shown[i], printable(b.Template), status,
			preserved, b.Images, b.Created.Local().Format(time.DateTime))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Coloured after the layout: tabwriter would count the escape
	// sequences as text. The display is each row's second cell, after
	// the slug and its padding.
	lines := strings.SplitAfter(buf.String(), "\n")
	for i, b := range list {
		c, ok := terminal.ParseRGB(plan.RGB(b.Color))
		line := lines[i+1]
		at := len(printable(b.Slug))
		j := strings.Index(line[at:], shown[i])
		if !ok || shown[i] == "" || j < 0 {
			continue
		}
		at += j
		lines[i+1] = line[:at] + depth.Paint(shown[i], c) + line[at+len(shown[i]):]
	}
	_, err := io.WriteString(w, strings.Join(lines, ""))
	return err
}

// printable drops control characters.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
}
