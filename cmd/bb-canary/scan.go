package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/bb-bottles/bb/lib/routes"
	"io"
	"strings"

	"github.com/bb-bottles/bb/lib/canary"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/detect"
	ucli "github.com/urfave/cli/v2"
)

type scanOptions struct {
	secrets []string // NAME=VALUE
	files   []string // "-" is stdin
}

func scanCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "scan",
		Usage:     "scan files for known secrets, raw or encoded",
		ArgsUsage: "[FILE|-]...",
		Description: "Scans each FILE (stdin when none, or -) for every known secret: the environment's\n" +
			"EGRESS_TOKEN_<NAME>=VALUE and each --secret NAME=VALUE (a flag wins over the\n" +
			"environment). Secrets are found raw, URL- or percent-encoded, in base64 (either\n" +
			"alphabet, any alignment), hex or JSON escapes. Prints one JSON line per hit:\n" +
			"{\"file\",\"secret\",\"offset\",\"encoding\"}, naming a secret, never its value.\n" +
			"Exits 1 if anything was found, 0 if not, 2 on an error.\n" +
			"Values on the command line show in ps; prefer the environment.\n\n" +
			cli.Examples(
				"EGRESS_TOKEN_CANARY=$BOT_BOTTLE_CANARY bb-canary scan transcript.jsonl",
				"git diff | bb-canary scan --secret GITHUB=\"$GITHUB_TOKEN\"",
				"bb-canary scan a.txt - b.txt < c.txt",
			),
		Flags: []ucli.Flag{
			&ucli.StringSliceFlag{Name: "secret", Usage: "a known secret as `NAME=VALUE` (repeatable)"},
		},
		Action: func(c *ucli.Context) error {
			return runScan(c.Context, cli.StreamsOf(c), scanOptions{secrets: c.StringSlice("secret"), files: c.Args().Slice()})
		},
	}
}

// scanHit is one line of scan's output.
type scanHit struct {
	File     string `json:"file"`
	Secret   string `json:"secret"`
	Offset   int64  `json:"offset"`
	Encoding string `json:"encoding"`
}

const readSize = 32 << 10

func runScan(ctx context.Context, s cli.Streams, opts scanOptions) error {
	d, err := scanDetector(s, opts.secrets)
	if err != nil {
		return err
	}
	files := opts.files
	if len(files) == 0 {
		files = []string{"-"}
	}
	stdin := 0
	for _, f := range files {
		if f == "-" || f == "" {
			stdin++
		}
	}
	if stdin > 1 {
		return cli.Usage(errors.New("stdin (-) given more than once"))
	}
	// Every file must open before any is scanned: a scan that stops half
	// way must not look like a clean one.
	for _, f := range files {
		r, _, err := cli.Open(s, f)
		if err != nil {
			return err
		}
		r.Close()
	}
	found := 0
	buf := make([]byte, readSize)
	for _, f := range files {
		n, err := scanFile(ctx, s, d, f, buf)
		found += n
		if err != nil {
			return err
		}
	}
	if found > 0 {
		return cli.Negative(nil)
	}
	return nil
}

// scanDetector builds the detector of the environment's secrets and flags.
// No message names a value: a --secret without "=" may be a bare value.
func scanDetector(s cli.Streams, flags []string) (*detect.Detector, error) {
	secrets := canary.SecretsFromEnv(s.Environ())
	for i, f := range flags {
		// A bare value pasted by mistake may hold "=" (base64 padding): only
		// an upper-case NAME before it counts as a name, and messages name
		// the flag by its position, never by what was given.
		name, value, ok := strings.Cut(f, "=")
		if !ok || !routes.ValidTokenName(name) {
			return nil, cli.Usage(fmt.Errorf("bad --secret #%d: want NAME=VALUE, NAME in upper case, digits and _", i+1))
		}
		if value == "" {
			return nil, cli.Usage(fmt.Errorf("bad --secret #%d: empty value", i+1))
		}
		secrets = setSecret(secrets, detect.Secret{Name: name, Value: value})
	}
	if len(secrets) == 0 {
		return nil, cli.Usage(errors.New("no secrets to scan for"),
			"set "+canary.SecretEnvPrefix+"<NAME>=VALUE in the environment or pass --secret NAME=VALUE")
	}
	d, err := detect.New(secrets)
	if err != nil {
		return nil, cli.Usage(fmt.Errorf("loading secrets: %w", err))
	}
	return d, nil
}

func setSecret(secrets []detect.Secret, sec detect.Secret) []detect.Secret {
	for i := range secrets {
		if secrets[i].Name == sec.Name {
			secrets[i] = sec
			return secrets
		}
	}
	return append(secrets, sec)
}

// scanFile streams one file through a scanner, printing hits as they are
// found, and returns how many there were.
func scanFile(ctx context.Context, s cli.Streams, d *detect.Detector, name string, buf []byte) (int, error) {
	r, label, err := cli.Open(s, name)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	sc := d.NewScanner()
	printed := 0
	for {
		if err := ctx.Err(); err != nil {
			return printed, err
		}
		n, rerr := r.Read(buf)
		sc.Write(buf[:n])
		for _, h := range sc.Take() {
			if err := cli.WriteJSONLine(s.Out, scanHit{File: label, Secret: h.Secret, Offset: h.Offset, Encoding: h.Encoding}); err != nil {
				return printed, fmt.Errorf("writing hits: %w", err)
			}
			printed++
		}
		if rerr == io.EOF {
			return printed, nil
		}
		if rerr != nil {
			return printed, cli.Usage(fmt.Errorf("reading %s: %w", label, unwrapPath(rerr)))
		}
	}
}
