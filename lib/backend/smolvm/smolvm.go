// Package smolvm holds the smolvm backend (microVMs, driven through the smolvm CLI).
// Only its freezer is built so far: a bottle cannot launch on it yet, and
// bb-launch says so; bb-freeze reaches the freezer through the backend's
// freeze capability.
package smolvm

import (
	"context"
	"fmt"
	"io"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/freeze"
	"github.com/bb-bottles/bb/lib/names"
)

// Driver registers the backend. Opening it contacts nothing.
var Driver = backend.Driver{Name: names.Smolvm, Open: func(_ context.Context, c backend.Config) (backend.Backend, error) {
	return &Backend{dir: c.Store.Dir}, nil
}}

// Backend is the backend as far as it is built: its freezer.
type Backend struct {
	// dir is bb's state folder, where snapshots are kept as files.
	dir string
}

var _ backend.Freezable = (*Backend)(nil)

// Name is the backend's name.
func (b *Backend) Name() string { return names.Smolvm }

// Prepare refuses: no bottle launches on this backend yet.
func (b *Backend) Prepare(*backend.Launching) (backend.LaunchSteps, error) {
	return nil, exit.Usage(fmt.Errorf("backend %s is planned but cannot launch yet", names.Smolvm),
		"plan for docker: bb-plan --backend "+names.Docker)
}

// Status is unknown: the backend's tool is not asked yet.
func (b *Backend) Status(context.Context, string) (backend.Status, error) {
	return backend.Status{Agent: backend.StatusUnknown}, nil
}

// Stop has nothing to do: no bottle of this backend was ever started.
func (b *Backend) Stop(context.Context, string) error { return nil }

// Exec refuses: no bottle of this backend runs.
func (b *Backend) Exec(context.Context, string, []string, io.Writer, io.Writer) (int, error) {
	return 0, backend.Unsupported(names.Smolvm, "run commands in its bottles yet")
}

// Close does nothing.
func (b *Backend) Close() error { return nil }

// Freezer snapshots the backend's bottles.
func (b *Backend) Freezer() freeze.Freezer { return &Freezer{Run: freeze.ExecRunner{}, Dir: b.dir} }
