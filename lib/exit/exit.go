// Package exit holds the design's exit codes and the typed errors that carry
// them: bad usage or input (2), a failure of the engine or backend (3), a
// negative answer (1), and an exit status passed through as is. Library
// packages return these; a command maps them to its exit code at the top
// (lib/cli). It imports nothing of bb and no CLI framework, so any package
// may use it.
package exit

import (
	"context"
	"errors"
	"fmt"
)

// Exit codes of the design. Every command uses these and no others, besides
// the passed-through status of an agent or an exec'd command.
const (
	CodeOK          = 0
	CodeNegative    = 1 // a negative answer: a secret found, a canary tripped
	CodeUsage       = 2 // bad usage or bad input
	CodeBackend     = 3 // the engine or backend failed, or any other failure that is not bad input
	CodeInterrupted = 130
)

// Error is an error with an exit code and hints for a person.
type Error struct {
	Code  int
	Err   error
	Hints []string
}

func (e *Error) Error() string {
	if e.Err == nil {
		return ""
	}
	return e.Err.Error()
}
func (e *Error) Unwrap() error { return e.Err }

// Usage marks err as bad usage or bad input (exit 2).
func Usage(err error, hints ...string) error { return &Error{Code: CodeUsage, Err: err, Hints: hints} }

// Usagef is Usage with a formatted message.
func Usagef(format string, a ...any) error { return Usage(fmt.Errorf(format, a...)) }

// Backend marks err as a failure of the engine or backend (exit 3).
func Backend(err error, hints ...string) error {
	return &Error{Code: CodeBackend, Err: err, Hints: hints}
}

// Negative is a negative answer (exit 1). err may be nil when the command
// has already said everything on stdout.
func Negative(err error) error { return &Error{Code: CodeNegative, Err: err} }

// Status is an exit status passed through as is, with nothing printed (an
// attached agent's or an exec'd command's own status).
func Status(code int) error { return &Error{Code: code} }

// WithHint adds hints to err, keeping its exit code.
func WithHint(err error, hints ...string) error {
	return &Error{Code: CodeOf(err), Err: err, Hints: append(append([]string(nil), Hints(err)...), hints...)}
}

// CodeOf maps an error to the design's exit codes. An error of no known
// kind is a failure (3), never bad usage: a full disk or a lost lock file
// is not the person's input, and a script must not take it for a negative
// answer (1). Bad input is marked Usage where it is found.
func CodeOf(err error) int {
	if err == nil {
		return CodeOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if errors.Is(err, context.Canceled) {
		return CodeInterrupted
	}
	return CodeBackend
}

// Hints returns the hints err carries for a person.
func Hints(err error) []string {
	var e *Error
	if errors.As(err, &e) {
		return e.Hints
	}
	return nil
}
