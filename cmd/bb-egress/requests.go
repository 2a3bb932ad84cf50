package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/state"
)

func requestsCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "requests",
		Usage:     "list the routes a bottle's agent asked for",
		ArgsUsage: "SLUG",
		Description: "Lists the route requests the agent made through its sidecar (requests.jsonl), oldest\n" +
			"first, as a JSON array of {\"time\",\"client\",\"host\",\"methods\",\"paths\",\"why\"}, or as a\n" +
			"table for people. The \"why\" is the agent's own words: read it, don't trust it.\n\n" +
			cli.Examples(
				"bb-egress requests demo-x1y2 --format table",
				"bb-egress requests demo-x1y2 | jq -r '.[].host' | sort -u",
				"bb-egress allow demo-x1y2 \"$(bb-egress requests demo-x1y2 | jq -r '.[-1].host')\"",
			),
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "format", Value: "json", Usage: "json or table"},
		},
		Action: action(1, 1, func(c *ucli.Context, args []string) error {
			return runRequests(c.Context, cli.StreamsOf(c), requestsOptions{Slug: args[0], Format: c.String("format")})
		}),
	}
}

type requestsOptions struct {
	Slug   string
	Format string // json or table
}

// request is one line of requests.jsonl, as the sidecar writes it. The
// JSON output passes each line through whole, so fields the sidecar adds
// later are not lost; this type is only for the table.
type request struct {
	Time    time.Time `json:"time"`
	Client  string    `json:"client"`
	Host    string    `json:"host"`
	Methods []string  `json:"methods"`
	Paths   []string  `json:"paths"`
	Why     string    `json:"why"`
}

func runRequests(_ context.Context, s cli.Streams, o requestsOptions) error {
	if o.Format != "json" && o.Format != "table" {
		return cli.Usage(fmt.Errorf("unknown format %q (want json or table)", o.Format))
	}
	b, err := openBottle(s, o.Slug)
	if err != nil {
		return err
	}
	path := b.egressFile(state.RequestsFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		f = nil
	} else if err != nil {
		return fmt.Errorf("reading the requests of bottle %s: %w", b.Slug, err)
	}
	raws := []json.RawMessage{}
	var reqs []request
	if f != nil {
		defer f.Close()
		br := bufio.NewReader(f)
		for n := 1; ; n++ {
			line, err := br.ReadBytes('\n')
			if len(line) == 0 && errors.Is(err, io.EOF) {
				break
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("reading %s: %w", path, err)
			}
			var r request
			if jerr := json.Unmarshal(line, &r); jerr != nil || line[0] != '{' {
				fmt.Fprintf(s.Err, "bb-egress: skipping line %d of %s: not a route request\n", n, path)
				continue
			}
			raws = append(raws, json.RawMessage(strings.TrimSpace(string(line))))
			reqs = append(reqs, r)
		}
	}
	if o.Format == "json" {
		return cli.WriteJSON(s.Out, raws)
	}
	tw := tabwriter.NewWriter(s.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tHOST\tMETHODS\tPATHS\tWHY")
	for _, r := range reqs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Time.UTC().Format(time.DateTime),
			printable(r.Host), orAny(printable(strings.Join(r.Methods, ","))),
			orAny(printable(strings.Join(r.Paths, ","))), printable(r.Why))
	}
	return tw.Flush()
}

// printable makes agent-written text safe for a terminal: an agent must
// not be able to move the cursor or rewrite earlier lines of a table a
// person reads to decide what to allow.
func printable(s string) string { return cli.Printable(s) }

func orAny(s string) string {
	if s == "" {
		return "*"
	}
	return s
}
