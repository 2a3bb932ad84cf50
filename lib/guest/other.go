//go:build !linux

package guest

import (
	"context"
	"io"
	"os"
)

// InitOptions are what the init is started with.
type InitOptions struct {
	SpecPath string
	Command  []string
	Stderr   io.Writer
}

// Init runs only in a Linux guest.
func Init(context.Context, InitOptions) (int, error) { return 0, ErrNotLinux }

// Attach runs only in a Linux guest.
func Attach(context.Context, string, *os.File, io.Writer) (int, error) { return 0, ErrNotLinux }

// Run runs only in a Linux guest.
func Run(argv, env []string) error { return ErrNotLinux }
