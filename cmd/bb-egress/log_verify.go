package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/state"
)

func logVerifyCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "verify",
		Usage:     "check that a bottle's audit log is whole and unedited",
		ArgsUsage: "SLUG | --file PATH",
		Description: "Checks the audit log's hash chain: every line is an entry, seq runs from 1 without\n" +
			"gaps, and each line records the SHA-256 of the one before. Prints a JSON report\n" +
			"{\"file\",\"lines\",\"ok\",\"last_seq\",\"last_hash\",...}. Exit 0 when intact; 1 when not, naming\n" +
			"the first broken line and why (\"broken\": {\"line\",\"problem\",\"reason\"}); 2 when the log\n" +
			"cannot be read. Lines cut whole from the end are caught only by the head file the\n" +
			"sidecar keeps beside the log (audit.head), which it writes when it starts and within a\n" +
			"second of each line. A log that rotated (audit.1.jsonl, audit.2.jsonl, ... beside it) is\n" +
			"verified as one chain across its files, oldest first; the files rotation deleted are\n" +
			"recorded in the log, and the report says how many lines they held (\"rotated_away\").\n" +
			"The chain proves a log was not edited by someone who did not rewrite all of it: it is\n" +
			"evidence, not a signature. Keep a copy of last_hash elsewhere to pin a log's past.\n\n" +
			cli.Examples(
				"bb-egress log verify demo-x1y2",
				"bb-egress log verify --file backup/audit.jsonl",
				"ssh host cat audit.jsonl | bb-egress log verify --file -",
			),
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "file", Usage: "verify the log at `PATH` (- for stdin, without a head file)"},
		},
		Action: action(0, 1, func(c *ucli.Context, args []string) error {
			o := logVerifyOptions{File: c.String("file")}
			if len(args) == 1 {
				o.Slug = args[0]
			}
			if (o.Slug == "") == (o.File == "") {
				return usageErr(c, errors.New("want a bottle's SLUG or --file PATH"))
			}
			return runLogVerify(c.Context, cli.StreamsOf(c), o)
		}),
	}
}

type logVerifyOptions struct {
	Slug string
	File string // "-" is stdin
}

func runLogVerify(_ context.Context, s cli.Streams, o logVerifyOptions) error {
	var (
		rep  audit.Report
		err  error
		hint []string
	)
	switch {
	case o.File == "-":
		rep, err = audit.Verify(s.In)
		rep.File = cli.StdinLabel
	case o.File != "":
		rep, err = audit.VerifyFile(o.File)
	default:
		b, berr := openBottle(s, o.Slug)
		if berr != nil {
			return berr
		}
		rep, err = audit.VerifyFile(b.egressFile(state.AuditLogFile))
		if errors.Is(err, fs.ErrNotExist) {
			hint = append(hint, "the sidecar writes its audit log on its first request")
		}
	}
	if err != nil {
		return cli.Usage(fmt.Errorf("verifying: %w", err), hint...)
	}
	if len(rep.Torn) > 0 {
		fmt.Fprintf(s.Err, "bb-egress: %s: line(s) %v were cut short by a crash; the chain continues past them\n", rep.File, rep.Torn)
	}
	switch {
	case o.File == "-":
	case rep.Head == nil:
		fmt.Fprintf(s.Err, "bb-egress: %s has no head file: lines cut from its end would go unnoticed\n", rep.File)
	case rep.OK && rep.Head.Seq < rep.LastSeq:
		// The sidecar rewrites the head within a second of each line.
		fmt.Fprintf(s.Err, "bb-egress: %s: the head file records seq %d; the %d line(s) after it are newer than the head, so lines cut from among them would go unnoticed\n",
			rep.File, rep.Head.Seq, rep.LastSeq-rep.Head.Seq)
	}
	if rep.RotatedAway > 0 && rep.Dropped != nil {
		fmt.Fprintf(s.Err, "bb-egress: %s: the first %d line(s) were rotated away (the last file deleted, %s, held %d block(s), %d with the canary); the chain is proven from seq %d\n",
			rep.File, rep.RotatedAway, rep.Dropped.File, rep.Dropped.Blocks, rep.Dropped.Canary, rep.FirstSeq)
	}
	if err := cli.WriteJSON(s.Out, rep); err != nil {
		return err
	}
	if !rep.OK {
		return cli.Negative(fmt.Errorf("%s is broken at line %d: %s", rep.File, rep.Broken.Line, rep.Broken.Reason))
	}
	return nil
}
