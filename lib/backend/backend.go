// Package backend holds what every backend shares and what the commands
// drive bottles through without naming one: the Backend interface and its
// optional capabilities, the registry that opens a backend by name, and the
// backend-neutral half of every life-cycle step — a launch's token values,
// state folder, routes, CA, workspace checks, launch record and
// undo-on-failure runner; the resume policy; stopping under the bottle's
// lock; listing bottles with their live status. Each backend is one package
// under it (lib/backend/docker, ...) that keeps only its engine's calls, and
// is registered in lib/backend/all.
package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/freeze"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/state"
	"github.com/bb-bottles/bb/lib/terminal"
)

// Backend runs bottles on one engine (Docker, Apple's container, smolvm).
// Every backend does what this interface has; what some cannot do is an
// optional capability (Attacher, Reloader, Restarter, Remover, Freezable,
// ImageChecker), checked with a type assertion, or an *UnsupportedError.
type Backend interface {
	// Name is the name plans and metadata record (lib/names).
	Name() string
	// Prepare checks the backend's part of l's plan and returns the
	// backend's half of the launch: its stages, run by Launch once the
	// workspace is checked, the tokens read and the state written. It
	// creates nothing, and may be called more than once (Check).
	Prepare(l *Launching) (LaunchSteps, error)
	// Status is what the backend has of bottle slug now.
	Status(ctx context.Context, slug string) (Status, error)
	// Stop removes the bottle's containers (or VMs) and networks, found by
	// their labels; a bottle with none is already stopped. Its state is
	// not touched: call it through StopLocked.
	Stop(ctx context.Context, slug string) error
	// Exec runs cmd in the bottle's running agent, as the agent's user, in
	// its working folder and environment, with no input, and returns its
	// exit status. Its output goes to stdout and stderr as it comes. A
	// bottle that is not running gives a *NotRunningError (bad usage).
	Exec(ctx context.Context, slug string, cmd []string, stdout, stderr io.Writer) (int, error)
	// Close releases the backend's connection.
	Close() error
}

// Attacher is a backend that joins a person's terminal to a running agent.
// One that is not cannot launch with LaunchOptions.Attach either.
type Attacher interface {
	// Attach opens the terminal session of bottle slug's running agent.
	Attach(ctx context.Context, slug string) (Session, error)
}

// Session is a terminal's connection to an agent, opened before the agent
// starts (LaunchOptions.Attach: nothing it prints first is lost) or while
// it runs (Attacher).
type Session interface {
	// Run joins term to the agent until it exits (its status is code), the
	// person detaches (detached), or ctx is done. The terminal is raw
	// meanwhile and restored however Run ends.
	Run(ctx context.Context, term *terminal.Terminal) (code int, detached bool, err error)
	// Close ends the session, leaving the agent as it is.
	Close()
}

// Reloader is a backend that can make a running sidecar re-read its routes
// file now. Without it the sidecar still picks a change up by watching the
// file, only later.
type Reloader interface {
	// Reload signals bottle slug's sidecar. One not running gives a
	// *NotRunningError: it reads the file when it starts.
	Reload(ctx context.Context, slug string) error
}

// Restarter is a backend that can start a bottle's stopped agent again
// with what its filesystem holds (Resume prefers it to booting a snapshot,
// which would lose everything since the snapshot).
type Restarter interface {
	// Restart starts o.Plan's stopped agent (and its sidecar, if it
	// stopped), taking the bottle's lock. A failure removes nothing: the
	// container is the person's work. Of o it uses Plan, Store, Attach,
	// ReadyTimeout and Progress.
	Restart(ctx context.Context, o LaunchOptions) (*Record, error)
}

// Freezable is a backend that snapshots bottles (bb-freeze).
type Freezable interface {
	Freezer() freeze.Freezer
}

// Remover is a backend that keeps more of a bottle than its containers
// and networks — its own git repository, its snapshots — which go when the
// bottle is removed (bb-launch stop --rm).
type Remover interface {
	// Remove removes what the backend keeps of bottle slug beyond what
	// Stop removes. Nothing of it is no error.
	Remove(ctx context.Context, slug string) error
}

// GitExporter is a backend that can hand out a bottle's own git
// repository (the agent's commits) as data.
type GitExporter interface {
	// ExportGit writes to w a git bundle of the branches of the bottle's
	// own repository, without the history of o.Exclude (commits the
	// person's repository has). git runs in a sandbox of the backend's
	// (the agent's image, no network, the repository read-only), never on
	// the host: the agent wrote that repository's configuration. A
	// repository with nothing to send writes nothing.
	ExportGit(ctx context.Context, o GitExport, w io.Writer) error
}

// GitExport says which bottle's repository ExportGit bundles, and how.
type GitExport struct {
	Slug string
	// Image is an image with git (the agent's), User the agent's user.
	Image, User string
	// HostGit is the person's .git, which the bottle's repository borrows
	// objects from (mounted read-only at workspace.HostGitMount); "" when
	// the workspace had none.
	HostGit string
	// Exclude are commits left out of the bundle with their history.
	Exclude []string
}

// ImageChecker is a backend that can say whether it still has an image (a
// resume boots the image the last launch built, when it is there).
type ImageChecker interface {
	ImageExists(ctx context.Context, ref string) (bool, error)
}

// Agent states in a Status (and bb-launch ls).
const (
	// StatusRunning: the agent runs (or is paused for a commit).
	StatusRunning = "running"
	// StatusStopped: its container (or VM) exists but has exited.
	StatusStopped = "stopped"
	// StatusMissing: the backend has no agent for it (stopped and removed;
	// resume boots it again).
	StatusMissing = "missing"
	// StatusUnknown: the backend could not be asked.
	StatusUnknown = "unknown"
)

// Status is what a backend has of one bottle.
type Status struct {
	// Agent is StatusRunning, StatusStopped or StatusMissing.
	Agent string
	// AgentName is the backend's name of the agent's container or VM; ""
	// when it has none.
	AgentName string
	// ExitCode is the stopped agent's exit status (Agent StatusStopped),
	// -1 when the backend cannot tell.
	ExitCode int
	// SidecarRunning says whether the sidecar runs.
	SidecarRunning bool
	// Leftovers says whether the backend has anything of the bottle:
	// containers, VMs or networks, running or not.
	Leftovers bool
}

// ErrNotRunning is matched (errors.Is) by every *NotRunningError.
var ErrNotRunning = errors.New("not running")

// NotRunningError says a bottle's agent (or sidecar) is not running.
type NotRunningError struct {
	Slug, Role string
}

func (e *NotRunningError) Error() string {
	if e.Role == names.RoleEgress {
		return fmt.Sprintf("bottle %s has no running sidecar", e.Slug)
	}
	return fmt.Sprintf("bottle %s is not running", e.Slug)
}

// Is makes every *NotRunningError match ErrNotRunning.
func (e *NotRunningError) Is(target error) bool { return target == ErrNotRunning }

// ErrUnsupported is matched (errors.Is) by every *UnsupportedError.
var ErrUnsupported = errors.New("unsupported")

// UnsupportedError is a backend asked for what it cannot do. It is bad
// usage (exit 2): the person asked this backend for it.
type UnsupportedError struct {
	Backend string
	// What it cannot do: "attach a terminal", "launch yet".
	What string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("backend %s cannot %s", e.Backend, e.What)
}

// Is makes every *UnsupportedError match ErrUnsupported.
func (e *UnsupportedError) Is(target error) bool { return target == ErrUnsupported }

// Unsupported is an *UnsupportedError marked bad usage, with hints.
func Unsupported(backend, what string, hints ...string) error {
	return exit.Usage(&UnsupportedError{Backend: backend, What: what}, hints...)
}

// Config is what opening a backend may need besides its name.
type Config struct {
	// Env looks up the person's environment (a tool's path, a socket);
	// Environ lists it (KEY=VALUE), for a backend that runs a tool in it.
	Env     func(string) string
	Environ func() []string
	// Store is bb's state folder (where a backend may keep snapshots).
	Store *state.Store
}

// Driver is a backend as registered: its name and how to open it.
type Driver struct {
	// Name is the name plans and metadata record (lib/names).
	Name string
	// Open connects to the backend. It is called only when a command needs
	// the backend, so a backend that cannot run here costs nothing until
	// one of its bottles is touched.
	Open func(ctx context.Context, c Config) (Backend, error)
}

var (
	mu      sync.RWMutex
	drivers = map[string]Driver{}
)

// Register makes d openable by its name. It panics when the name is empty,
// Open is nil, or the name is taken: all are programming errors.
func Register(d Driver) {
	if d.Name == "" || d.Open == nil {
		panic("backend: Register of an incomplete driver " + d.Name)
	}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := drivers[d.Name]; dup {
		panic(fmt.Sprintf("backend: Register called twice for %q", d.Name))
	}
	drivers[d.Name] = d
}

// Names lists the registered backends, in the order of names.Backends and
// then sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	var out []string
	for _, n := range names.Backends {
		if _, ok := drivers[n]; ok {
			out = append(out, n)
		}
	}
	var rest []string
	for n := range drivers {
		if !slices.Contains(out, n) {
			rest = append(rest, n)
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}

// Of is the backend bottle md runs on: the one its metadata names, or
// Docker for metadata from before bottles recorded one (Docker was the only
// backend then).
func Of(md state.Metadata) string {
	if md.Backend == "" {
		return names.Docker
	}
	return names.Backend(md.Backend)
}

// Open opens the backend a plan or metadata names (a former name reads as
// today's, none as Docker: see Of). An unknown one is bad input.
func Open(ctx context.Context, name string, c Config) (Backend, error) {
	name = Of(state.Metadata{Backend: name})
	mu.RLock()
	d, ok := drivers[name]
	mu.RUnlock()
	if !ok {
		return nil, exit.Usagef("unknown backend %q: want %s", name, strings.Join(Names(), ", "))
	}
	if c.Env == nil {
		c.Env = func(string) string { return "" }
	}
	if c.Environ == nil {
		c.Environ = func() []string { return nil }
	}
	return d.Open(ctx, c)
}
