// Package cli holds the plumbing every bb command shares: streams passed in
// rather than taken from os, typed errors mapped to the design's exit codes,
// and the one place where an error is printed.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"unicode"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/exit"
)

// Exit codes of the design (lib/exit's), named here for the commands.
const (
	ExitOK          = exit.CodeOK
	ExitNegative    = exit.CodeNegative
	ExitUsage       = exit.CodeUsage
	ExitBackend     = exit.CodeBackend
	ExitInterrupted = exit.CodeInterrupted
)

// Streams are a command's standard streams and environment. Nothing below
// main touches os.Stdin, os.Stdout, os.Stderr or os.Getenv directly.
type Streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
	// Env looks up an environment variable; Environ lists them all
	// (KEY=VALUE). Both are taken from os only in Main.
	Env     func(string) string
	Environ func() []string
}

// OS returns the process's real streams and environment. Only main calls it.
func OS() Streams {
	return Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Env: os.Getenv, Environ: os.Environ}
}

// The typed errors of lib/exit, named here so that a command imports one
// package for its plumbing. Library packages use lib/exit, which has no CLI
// framework in it.
type Error = exit.Error

// Usage is exit.Usage: bad usage or bad input (exit 2).
func Usage(err error, hints ...string) error { return exit.Usage(err, hints...) }

// Usagef is exit.Usagef.
func Usagef(format string, a ...any) error { return exit.Usagef(format, a...) }

// Backend is exit.Backend: the engine or backend failed (exit 3).
func Backend(err error, hints ...string) error { return exit.Backend(err, hints...) }

// Negative is exit.Negative: a negative answer (exit 1).
func Negative(err error) error { return exit.Negative(err) }

// Exit is exit.Status: an exit status passed through, nothing printed.
func Exit(code int) error { return exit.Status(code) }

// WithHint is exit.WithHint.
func WithHint(err error, hints ...string) error { return exit.WithHint(err, hints...) }

// CodeOf is exit.CodeOf.
func CodeOf(err error) int { return exit.CodeOf(err) }

// Report prints err once, as "name: message" and any "hint:" lines, and
// returns the exit code.
func Report(w io.Writer, name string, err error) int {
	code := CodeOf(err)
	if err == nil {
		return code
	}
	if errors.Is(err, context.Canceled) {
		// Name what was under way: "bb-launch: starting the sidecar:
		// interrupted", not a bare "interrupted".
		if doing := interruptedDoing(err); doing != "" {
			fmt.Fprintf(w, "%s: %s: interrupted\n", name, doing)
		} else {
			fmt.Fprintf(w, "%s: interrupted\n", name)
		}
		return ExitInterrupted
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintf(w, "%s: %s\n", name, msg)
	}
	for _, h := range exit.Hints(err) {
		fmt.Fprintf(w, "hint: %s\n", h)
	}
	return code
}

// interruptedDoing is what err says was under way when the context was
// cancelled: the outermost "<doing>" of the "<doing>: %w" wrapping. Only
// the outermost: what lies below it may be an engine's URL, and the
// cancellation's own text varies (a signal's cause, "context canceled").
func interruptedDoing(err error) string {
	for err != nil {
		next := errors.Unwrap(err)
		if m, ok := err.(interface{ Unwrap() []error }); ok && len(m.Unwrap()) > 0 {
			next = m.Unwrap()[0]
		}
		if next == nil {
			return ""
		}
		if doing, ok := strings.CutSuffix(err.Error(), ": "+next.Error()); ok && doing != "" {
			return doing
		}
		err = next
	}
	return ""
}

// Main runs app with the process's streams, arguments and a context that is
// cancelled on SIGINT or SIGTERM, and on extra (bb-launch and bb-freeze
// pass SIGHUP: a closed terminal must not leave half a launch behind; not
// bb-egress, for which SIGHUP means reload), and returns the exit code for
// os.Exit.
func Main(app *ucli.App, extra ...os.Signal) int {
	ctx, stop := signal.NotifyContext(context.Background(), append([]os.Signal{os.Interrupt, syscall.SIGTERM}, extra...)...)
	defer stop()
	code := Run(ctx, app, OS(), os.Args)
	if code != ExitOK && ctx.Err() != nil {
		return ExitInterrupted
	}
	return code
}

// Run runs app with the given streams and arguments (args[0] is the
// program name) and returns the exit code. Tests call it directly.
func Run(ctx context.Context, app *ucli.App, s Streams, args []string) int {
	app.Reader, app.Writer, app.ErrWriter = s.In, s.Out, s.Err
	app.EnableBashCompletion = true
	app.ExitErrHandler = func(*ucli.Context, error) {}
	app.OnUsageError = usageError
	setUsageErrors(app.Commands)
	app.Action = markAction(app.Action)
	markActions(app.Commands)
	if app.Metadata == nil {
		app.Metadata = map[string]any{}
	}
	app.Metadata[streamsKey] = s
	err := app.RunContext(ctx, args)
	var ae *actionError
	switch {
	case errors.As(err, &ae):
		err = ae.err
	case err != nil && !errors.As(err, new(*exit.Error)):
		// The framework's own refusal of the command line (a required
		// flag missing): bad usage, where an unclassified error of an
		// action is a failure.
		err = Usage(err, "run '"+app.Name+" --help' for usage")
	}
	return Report(s.Err, app.Name, err)
}

// actionError is an error an action returned, told apart from the
// framework's own.
type actionError struct{ err error }

func (e *actionError) Error() string { return e.err.Error() }
func (e *actionError) Unwrap() error { return e.err }

func markAction(a ucli.ActionFunc) ucli.ActionFunc {
	if a == nil {
		return nil
	}
	return func(c *ucli.Context) error {
		if err := a(c); err != nil {
			return &actionError{err}
		}
		return nil
	}
}

func markActions(cmds []*ucli.Command) {
	for _, c := range cmds {
		c.Action = markAction(c.Action)
		markActions(c.Subcommands)
	}
}

const streamsKey = "bb.streams"

// StreamsOf returns the streams Run gave the app.
func StreamsOf(c *ucli.Context) Streams {
	if s, ok := c.App.Metadata[streamsKey].(Streams); ok {
		return s
	}
	return Streams{In: c.App.Reader, Out: c.App.Writer, Err: c.App.ErrWriter,
		Env: func(string) string { return "" }, Environ: func() []string { return nil }}
}

func usageError(c *ucli.Context, err error, _ bool) error {
	return Usage(err, "run '"+c.App.Name+" --help' for usage")
}

func setUsageErrors(cmds []*ucli.Command) {
	for _, c := range cmds {
		if c.OnUsageError == nil {
			c.OnUsageError = usageError
		}
		setUsageErrors(c.Subcommands)
	}
}

// StdinLabel is how stdin is named in messages.
const StdinLabel = "<stdin>"

// Open opens name for reading; "-" or "" is stdin. It returns the reader
// and the label to use in messages.
func Open(s Streams, name string) (io.ReadCloser, string, error) {
	if name == "" || name == "-" {
		return io.NopCloser(s.In), StdinLabel, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, name, Usage(fmt.Errorf("opening %s: %w", name, unwrapPath(err)))
	}
	return f, name, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// WriteJSON writes v to w as indented JSON followed by a newline.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// WriteJSONLine writes v to w as one line of JSON (for streams of records).
func WriteJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}


// Examples formats an "EXAMPLES" block for a command's Description.
func Examples(lines ...string) string {
	return "EXAMPLES:\n   " + strings.Join(lines, "\n   ")
}

// Printable makes s safe to show on a person's terminal: line breaks and
// tabs become spaces, and every other control or unprintable character
// (ESC, C1's CSI, ...) becomes '?'. Text an agent controls (a logged path,
// a request's reason) goes through it before any table shows it.
func Printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		if !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, s)
}
