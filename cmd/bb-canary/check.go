package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/state"
	ucli "github.com/urfave/cli/v2"
)

type checkOptions struct {
	slug string
}

func checkCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "check",
		Usage:     "check a bottle's audit log for a tripped canary",
		ArgsUsage: "SLUG",
		Description: "Reads the audit log of bottle SLUG (<state dir>/SLUG/egress/audit.jsonl, after its\n" +
			"rotated files audit.N.jsonl) and prints every line where the sidecar saw the canary, as is;\n" +
			"canary lines in files rotation deleted are counted from the log's rotation lines. Exits 1\n" +
			"if there was any, 0 if\n" +
			"none (or no log yet), 2 if there is no such bottle or the log is malformed.\n\n" +
			cli.Examples(
				"bb-canary check my-bottle-1a2b",
				"bb-canary check my-bottle-1a2b | jq -r '.host + .path'",
				"bb-canary check \"$slug\" || bb-freeze commit \"$slug\"",
			),
		Action: func(c *ucli.Context) error {
			switch c.NArg() {
			case 0:
				return cli.Usage(errors.New("no SLUG given"), "run 'bb-launch ls' to list the bottles")
			case 1:
			default:
				return cli.Usagef("check takes one SLUG, got %q", c.Args().Slice())
			}
			return runCheck(c.Context, cli.StreamsOf(c), checkOptions{slug: c.Args().First()})
		},
	}
}

// maxLine bounds one audit line; real ones are a few hundred bytes.
const maxLine = 1 << 20

func runCheck(ctx context.Context, s cli.Streams, opts checkOptions) error {
	if err := state.CheckSlug(opts.slug); err != nil {
		return cli.Usage(fmt.Errorf("bad SLUG: %w", err), "run 'bb-launch ls' to list the bottles")
	}
	// The slug becomes a path: whatever CheckSlug allows, it must not name
	// the state directory itself or climb out of it.
	if strings.ContainsAny(opts.slug, `./\`) {
		return cli.Usage(fmt.Errorf("bad SLUG: %w %q: a bottle's name, not a path", state.ErrInvalidSlug, opts.slug),
			"run 'bb-launch ls' to list the bottles")
	}
	st, err := state.Open(s.Env)
	if err != nil {
		return cli.Usage(err)
	}
	if fi, err := os.Stat(st.BottleDir(opts.slug)); err != nil || !fi.IsDir() {
		return cli.Usage(fmt.Errorf("no bottle %s in %s", opts.slug, st.Dir), "run 'bb-launch ls' to list the bottles")
	}
	log := filepath.Join(st.EgressDir(opts.slug), state.AuditLogFile)
	// A log that rotated is read from its oldest file; the files rotation
	// deleted are counted in its rotation lines.
	files, err := audit.Files(log)
	if err != nil {
		return cli.Usage(err)
	}
	if len(files) == 0 {
		fmt.Fprintf(s.Err, "bb-canary: bottle %s has no audit log yet: nothing has gone out\n", opts.slug)
		return nil
	}
	var c checked
	for _, path := range files {
		if err := c.file(ctx, s, path); err != nil {
			return err
		}
	}
	n, tripped, unreadable := c.n, c.tripped, c.unreadable
	if c.away > 0 {
		fmt.Fprintf(s.Err, "bb-canary: %d line(s) with the canary were in audit files that rotation deleted\n", c.away)
		tripped += c.away
	}
	if tripped > 0 {
		return cli.Negative(fmt.Errorf("bottle %s sent its canary in %d request(s)", opts.slug, tripped))
	}
	if unreadable != nil {
		return cli.Usage(unreadable, "'bb-egress log verify "+opts.slug+"' tells whether the log was cut or edited")
	}
	fmt.Fprintf(s.Err, "bb-canary: no canary in the %d line(s) of bottle %s's audit log\n", n, opts.slug)
	return nil
}

// checked is what runCheck found so far, file after file.
type checked struct {
	n, tripped, away int
	unreadable       error
}

func (c *checked) file(ctx context.Context, s cli.Streams, path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // rotated away since it was listed
	}
	if err != nil {
		return cli.Usage(fmt.Errorf("opening %s: %w", path, unwrapPath(err)))
	}
	defer f.Close()

	lines := bufio.NewScanner(f)
	lines.Buffer(make([]byte, 0, 64<<10), maxLine)
	// An unreadable line (one torn by a killed sidecar, or edited) does not
	// stop the reading: a canary line after it, or before it, is still the
	// proof that matters (exit 1). Only with no canary seen is an
	// unreadable line the answer (exit 2): nothing can be vouched for.
	n0 := c.n
	for lines.Scan() {
		c.n++
		if c.n%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		line := lines.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e audit.Entry
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		err := dec.Decode(&e)
		if err == nil && dec.More() {
			err = errors.New("more than one JSON value")
		}
		if err != nil {
			err = fmt.Errorf("reading %s line %d: %w", path, c.n-n0, err)
			fmt.Fprintf(s.Err, "bb-canary: skipping a line: %v\n", err)
			if c.unreadable == nil {
				c.unreadable = err
			}
			continue
		}
		if r := e.Rotation; r != nil {
			c.away = max(c.away, r.CanaryRotatedAway)
		}
		if !e.Canary {
			continue
		}
		c.tripped++
		if _, err := fmt.Fprintf(s.Out, "%s\n", line); err != nil {
			return fmt.Errorf("writing lines: %w", err)
		}
	}
	if err := lines.Err(); err != nil {
		return cli.Usage(fmt.Errorf("reading %s after line %d: %w", path, c.n-n0, err))
	}
	return nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
