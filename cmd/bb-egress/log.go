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
	"strconv"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/state"
)

func logCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "log",
		Usage:     "print a bottle's audit log, or verify it",
		ArgsUsage: "SLUG",
		Description: "Prints the lines of the bottle's audit log (audit.jsonl) as they are, one JSON object\n" +
			"per line: every decision of the sidecar, chained by hash; a log that rotated is read from\n" +
			"its oldest file (audit.N.jsonl) to audit.jsonl. --follow keeps printing new\n" +
			"lines until interrupted. Lines that are not audit entries are skipped with a warning:\n" +
			"'bb-egress log verify' says whether the log was tampered with.\n\n" +
			cli.Examples(
				"bb-egress log demo-x1y2 --decision deny | jq -r '.host' | sort | uniq -c",
				"bb-egress log demo-x1y2 --canary            # proof of exfiltration attempts",
				"bb-egress log demo-x1y2 --follow | jq -c '{time,decision,host,path,reason}'",
				"bb-egress log verify demo-x1y2",
				"bb-egress log demo-x1y2 --format table     # for people",
			),
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing lines as they are written"},
			&ucli.StringFlag{Name: "decision", Usage: "only lines with this decision: allow, deny or block"},
			&ucli.BoolFlag{Name: "canary", Usage: "only lines where the canary was found"},
			&ucli.StringFlag{Name: "format", Value: "json", Usage: "json (the lines as they are) or table (one aligned row per decision, for people)"},
		},
		Subcommands:     []*ucli.Command{logVerifyCommand()},
		HideHelpCommand: true,
		Action: action(1, 1, func(c *ucli.Context, args []string) error {
			return runLog(c.Context, cli.StreamsOf(c), logOptions{Slug: args[0], Follow: c.Bool("follow"), Format: c.String("format"),
				Filter: audit.Filter{Decision: c.String("decision"), Canary: c.Bool("canary")}})
		}),
	}
}

type logOptions struct {
	Slug   string
	Follow bool
	Format string // json or table
	Filter audit.Filter
}

func runLog(ctx context.Context, s cli.Streams, o logOptions) error {
	if err := audit.CheckDecision(o.Filter.Decision); err != nil {
		return cli.Usage(err)
	}
	var write func([]byte) error
	switch o.Format {
	case "", "json":
		write = func(line []byte) error {
			_, err := s.Out.Write(append(line, '\n'))
			return err
		}
	case "table":
		header := false
		write = func(line []byte) error {
			if !header {
				header = true
				if _, err := io.WriteString(s.Out, tableHeader); err != nil {
					return err
				}
			}
			var e audit.Entry
			if err := json.Unmarshal(line, &e); err != nil {
				return err
			}
			_, err := io.WriteString(s.Out, tableRow(e))
			return err
		}
	default:
		return cli.Usagef("unknown --format %q (want json or table)", o.Format)
	}
	b, err := openBottle(s, o.Slug)
	if err != nil {
		return err
	}
	path := b.egressFile(state.AuditLogFile)
	n := 0
	each := func(line []byte) error {
		n++
		ok, err := o.Filter.Match(line)
		if err != nil {
			fmt.Fprintf(s.Err, "bb-egress: skipping line %d of %s: %v\n", n, path, err)
			return nil
		}
		if !ok {
			return nil
		}
		return write(line)
	}
	if o.Follow {
		return audit.Follow(ctx, path, each)
	}
	files, err := audit.Files(path)
	if err != nil {
		return fmt.Errorf("reading the audit log of bottle %s: %w", b.Slug, err)
	}
	if len(files) == 0 {
		fmt.Fprintf(s.Err, "bb-egress: bottle %s has no audit log yet\n", b.Slug)
		return nil
	}
	for _, name := range files {
		if err := printFile(s, name, &n, each); err != nil {
			return err
		}
	}
	return nil
}

// printFile passes each line of one file of the log to each.
func printFile(s cli.Streams, path string, n *int, each func([]byte) error) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // rotated away since it was listed
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	for {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			if len(line) > 0 {
				// Being written right now, or torn by a crash.
				fmt.Fprintf(s.Err, "bb-egress: skipping line %d of %s: no newline yet\n", *n+1, path)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		if err := each(line[:len(line)-1]); err != nil {
			return err
		}
	}
}

// The table has fixed columns, not a tabwriter's, so that --follow can
// print each row as it comes.
var tableHeader = tableCols("TIME", "DECISION", "STATUS", "METHOD", "HOST", "PATH", "SECRET", "REASON")

// Every column passes through cli.Printable: the method, host, path and
// reason come from the agent's requests, and a raw ESC in them would let it
// rewrite the table a person reads to decide what to allow.
func tableCols(time, decision, status, method, host, path, secret, reason string) string {
	p := cli.Printable
	return fmt.Sprintf("%-8s  %-8s  %-6s  %-7s  %-25s  %-21s  %-7s  %s\n",
		p(time), p(decision), p(status), p(method), clip(p(host), 25), clip(p(path), 21), clip(p(secret), 7), p(reason))
}

func tableRow(e audit.Entry) string {
	secret := e.Secret
	if e.Canary {
		secret = "CANARY!"
	}
	path, reason := e.Path, e.Reason
	if g := e.Git; g != nil {
		// A push reads as what it did to which repository, not as the
		// endpoint it was posted to.
		path = g.Repo
		reason = gitSummary(g) + reason
	}
	return tableCols(e.Time.Local().Format("15:04:05"), e.Decision, strconv.Itoa(e.Status), e.Method, e.Host, path, secret, reason)
}

// gitSummary is a push's refs (old..new, abbreviated as git does), object
// count and pack size, ahead of the reason; a fetch's service.
func gitSummary(g *audit.Git) string {
	if len(g.Refs) == 0 {
		return g.Service + ": "
	}
	var b strings.Builder
	b.WriteString("push")
	for _, r := range g.Refs {
		fmt.Fprintf(&b, " %s %s..%s", r.Ref, abbrev(r.Old), abbrev(r.New))
	}
	if n := g.RefCount - len(g.Refs); n > 0 {
		fmt.Fprintf(&b, " (and %d more)", n)
	}
	fmt.Fprintf(&b, ", %d objects, %d bytes: ", g.Objects, g.PackBytes)
	return b.String()
}

func abbrev(id string) string {
	if len(id) > 7 {
		return id[:7]
	}
	return id
}

// clip shortens s to n characters, marking the cut.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
