package backend

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/state"
	"github.com/bb-bottles/bb/lib/workspace"
)

// LaunchOptions are what a launch needs besides the backend.
type LaunchOptions struct {
	// Plan is the plan to carry out, and PlanJSON its text, stored as is in
	// the bottle's folder.
	Plan     *plan.Plan
	PlanJSON []byte
	Store    *state.Store
	// Resume boots an existing bottle again (same slug, canary, CA and
	// routes) instead of creating one; Image, when set, is the committed
	// image to boot instead of building the Dockerfile.
	Resume bool
	Image  string
	// SidecarBinary is the static bb-egress put into the sidecar image.
	SidecarBinary string
	// BaseImage is the agent Dockerfile's BASE build argument; empty keeps
	// the Dockerfile's own default. BuildArgs are more build arguments
	// (INSTALL_CLI=0 in tests) over the plan's.
	BaseImage string
	BuildArgs map[string]string
	// UpstreamCA is a PEM file of CAs the sidecar trusts upstream besides
	// the system's (tests and the demo); it is copied into the egress folder.
	UpstreamCA string
	// AllowPrivate lets the sidecar's routes reach private (RFC 1918)
	// addresses, which it refuses by default: for upstreams on private
	// networks, e.g. the offline demo's and the tests' on the bottle's
	// egress network. Recorded in the LaunchFile, so a resume keeps it.
	AllowPrivate bool
	// Env looks up the host's variables: token values, HOME for ~ in token
	// files. Dir is the folder a plan without a workspace mounts.
	Env func(string) string
	Dir string
	// UID and GID run the sidecar, so that it can write the bind-mounted
	// egress folder the invoking user owns.
	UID, GID int
	// Progress receives build progress and what the launch is doing (nil:
	// nowhere).
	Progress io.Writer
	// Attach opens the agent's terminal session just before it starts, so
	// that nothing it prints first is lost; Record.Session holds it. A
	// launch that fails after opening it closes it. A backend that is not
	// an Attacher refuses it.
	Attach bool
	// BeforeStart is called with the agent created and provisioned, just
	// before it starts. An error fails the launch.
	BeforeStart func(ctx context.Context, agentID string) error
	// Confirm, when set, asks the person at a terminal (the text to show,
	// then the question): a manifest in a workspace that they have not
	// trusted is shown and trusted only with their yes. Nil: refused.
	Confirm func(show, question string) (bool, error)
	// ReadyTimeout bounds the wait for the sidecar; 0 means 20s.
	ReadyTimeout time.Duration
	// Trace, when set, gets how long each step took.
	Trace io.Writer
}

// Record is what a launch made: bb-launch prints it (the launch record), and
// the next command needs nothing else to reach the bottle.
type Record struct {
	Slug             string `json:"slug"`
	Backend          string `json:"backend"`
	AgentContainer   string `json:"agent_container"`
	SidecarContainer string `json:"sidecar_container"`
	AgentImage       string `json:"agent_image"`
	SidecarImage     string `json:"sidecar_image"`
	// DiskLimit is the bound on what the agent writes outside its mounts
	// and tmpfs ("16g"), or why there is none; "" where the backend does
	// not say.
	DiskLimit string `json:"disk_limit,omitempty"`
	// AgentID is the backend's ID of the agent's container or VM (not
	// printed: names are stable).
	AgentID string `json:"-"`
	// Session is the agent's terminal, when LaunchOptions.Attach.
	Session Session `json:"-"`
}

// StepError is a launch that failed at a step; Step names it ("starting
// the sidecar"), and the message is "<step>: <cause>".
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return e.Step + ": " + e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

// Step is one named step of a launch.
type Step struct {
	// Name says what it does, for errors and the trace: "starting the
	// sidecar".
	Name string
	Run  func(context.Context) error
}

// Stage is steps run together: each lane (a list of steps, run in order)
// runs at the same time as the stage's other lanes. The next stage starts
// when every lane has ended.
type Stage [][]Step

// LaunchSteps is a backend's half of one launch (Backend.Prepare).
type LaunchSteps interface {
	// Stages are the backend's steps: building images, making networks,
	// starting the sidecar and the agent.
	Stages() []Stage
	// Undo removes what the stages made, when a step failed or the launch
	// was cut off (interrupted: a creation cut off half way may still
	// complete in the engine a moment later). ctx is a fresh one.
	Undo(ctx context.Context, interrupted bool)
	// Result is what the launch made, once every stage has run; Launch
	// sets Slug and Backend.
	Result() Record
}

// Launching is one launch in progress, as a backend's steps see it. Workspace
// and Tokens are set before the backend's first stage runs.
type Launching struct {
	LaunchOptions
	// ID is on every container and network the launch creates (label
	// names.LabelLaunch), so that undo finds one whose creation was cut off
	// before the engine could say its ID.
	ID string
	// Workspace is the host folder the agent gets read-write, its symlinks
	// resolved and checked (CheckWorkspace), and WorkspaceID its identity.
	Workspace   string
	WorkspaceID workspace.ID
	// Git is what the agent gets of git (GitMounts, GitSeed): its own
	// repository, never the person's .git.
	Git workspace.GitPlan
	// MadeGitDir: the backend made <workspace>/.git as the mountpoint of
	// the bottle's own repository (MakeGitMountpoint); recorded, so that
	// removing the bottle removes it.
	MadeGitDir bool
	// Tokens are the sidecar's environment: EGRESS_TOKEN_<NAME>=value for
	// every token and the canary. They go to the sidecar and nowhere else.
	Tokens []string

	madeState bool // this launch wrote the bottle's metadata: undo removes its folder
	unlock    func() error
	backend   Backend
}

// Mark traces a point within a step.
func (l *Launching) Mark(what string) {
	if l.Trace != nil {
		fmt.Fprintf(l.Trace, "bb-launch:   %s at %s\n", what, time.Now().Format("15:04:05.000"))
	}
}

// Launch makes a plan real on b: state, images, networks, the sidecar and
// the provisioned agent, started. A failure at any step, or ctx being
// done, removes everything this launch created (containers, networks, and
// the state folder when it created it) and names the step.
func Launch(ctx context.Context, b Backend, o LaunchOptions) (rec *Record, err error) {
	p := o.Plan
	if err := Check(b, o); err != nil {
		return nil, err
	}
	if o.Env == nil {
		o.Env = func(string) string { return "" }
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	l := &Launching{LaunchOptions: o, ID: strings.ToLower(rand.Text()[:16]), backend: b}
	bl, err := b.Prepare(l)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			// A context of its own: the launch's may be the one that was
			// cancelled.
			interrupted := ctx.Err() != nil
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			bl.Undo(ctx, interrupted)
			l.undo()
		}
	}()
	step := func(ctx context.Context, s Step) error {
		if err := ctx.Err(); err != nil {
			return &StepError{Step: s.Name, Err: err}
		}
		start := time.Now()
		err := s.Run(ctx)
		if o.Trace != nil {
			fmt.Fprintf(o.Trace, "bb-launch: %-28s %v\n", s.Name, time.Since(start).Round(time.Millisecond))
		}
		if err != nil {
			if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
				err = fmt.Errorf("%w: %w", ctx.Err(), err)
			}
			return &StepError{Step: s.Name, Err: err}
		}
		return nil
	}
	// Each lane runs its steps in order, and the lanes of a stage run at
	// once. A failing lane does not cancel the others: a creation cut off
	// half way may still complete in the engine after undo has looked, so
	// they run to their end (they are short), and undo sees what they made.
	stage := func(lanes Stage) error {
		errs := make([]error, len(lanes))
		var wg sync.WaitGroup
		for i, lane := range lanes {
			wg.Go(func() {
				for _, s := range lane {
					if errs[i] = step(ctx, s); errs[i] != nil {
						return
					}
				}
			})
		}
		wg.Wait()
		return cmp.Or(errs...)
	}
	stages := append([]Stage{
		{{{"checking the workspace", l.checkWorkspace}, {"reading the tokens", l.readTokens}}},
		{{{"writing the bottle's state", l.writeState}}},
	}, bl.Stages()...)
	for _, lanes := range stages {
		if err := stage(lanes); err != nil {
			return nil, err
		}
	}
	r := bl.Result()
	r.Slug, r.Backend = p.Slug, b.Name()
	rec = &r
	if err := step(ctx, Step{"recording the launch", func(context.Context) error { return l.record(rec) }}); err != nil {
		return nil, err
	}
	if l.unlock != nil {
		l.unlock()
	}
	return rec, nil
}

// Check refuses a launch of o on b that cannot be, before anything is
// looked up or made: a plan that is not for b, a terminal b cannot attach,
// a plan section b refuses (b.Prepare), a backend that cannot launch yet.
// Launch checks it first; a command may call it earlier, before the work
// of gathering what the rest of o needs.
func Check(b Backend, o LaunchOptions) error {
	if err := CheckPlan(o.Plan, b.Name()); err != nil {
		return err
	}
	if _, ok := b.(Attacher); o.Attach && !ok {
		return Unsupported(b.Name(), "attach a terminal", "launch it with --detach, and reach it with 'bb-launch exec'")
	}
	_, err := b.Prepare(&Launching{LaunchOptions: o})
	return err
}

// undo removes the state folder the launch made, and lets go of the
// bottle's lock.
func (l *Launching) undo() {
	if l.madeState {
		os.RemoveAll(l.Store.BottleDir(l.Plan.Slug))
	}
	if l.unlock != nil {
		l.unlock()
	}
}

// CheckPlan checks what a launch on backend relies on, beyond the strict
// decoding; the backend checks its own section (Prepare).
func CheckPlan(p *plan.Plan, backend string) error {
	switch {
	case p == nil:
		return exit.Usagef("no plan")
	case p.Kind != plan.Kind:
		return exit.Usagef("plan kind is %q, want %q", p.Kind, plan.Kind)
	case p.Version != plan.Version:
		return exit.Usagef("plan version is %d, want %d", p.Version, plan.Version)
	case p.Backend != backend:
		return exit.Usagef("plan backend is %q, want %q", p.Backend, backend)
	case !plan.ValidCanary(p.Canary):
		return exit.Usagef("plan canary is not 43 base64url characters")
	case p.Agent.User == "" || p.Agent.User == "root" || p.Agent.User == "0" || strings.HasPrefix(p.Agent.User, "0:"):
		return exit.Usagef("plan agent.user is %q: the agent must run as a non-root user", p.Agent.User)
	case len(p.Agent.Command) == 0:
		return exit.Usagef("plan agent.command is empty")
	}
	if err := state.CheckSlug(p.Slug); err != nil {
		return exit.Usage(fmt.Errorf("plan slug: %w", err))
	}
	return nil
}

// LaunchFile in a bottle's folder records how it was last launched, so that
// resume can boot the same image (and build it the same way) without the
// flags and variables of the first launch.
const LaunchFile = "launch.json"

// Launched is the LaunchFile.
type Launched struct {
	AgentImage   string            `json:"agent_image"`
	SidecarImage string            `json:"sidecar_image"`
	BaseImage    string            `json:"base_image"`
	BuildArgs    map[string]string `json:"build_args"`
	// AllowPrivate is LaunchOptions.AllowPrivate.
	AllowPrivate bool `json:"allow_private,omitempty"`
	// Workspace is the host folder mounted in the agent (symlinks
	// resolved), recorded at the first launch: a resume mounts it, not the
	// folder the resume happens to run in — and only while it is still
	// that folder (WorkspaceID: its device and inode).
	Workspace   string       `json:"workspace,omitempty"`
	WorkspaceID workspace.ID `json:"workspace_id,omitzero"`
	// MadeGitDir says bb made <workspace>/.git, empty, for the bottle's
	// own repository to be mounted on; removing the bottle removes it.
	MadeGitDir bool `json:"made_git_dir,omitempty"`
}

func (l *Launching) record(rec *Record) error {
	prev, _ := ReadLaunched(l.Store, l.Plan.Slug)
	ld := Launched{AgentImage: rec.AgentImage, SidecarImage: rec.SidecarImage, BaseImage: l.BaseImage, BuildArgs: l.BuildArgs,
		AllowPrivate: l.AllowPrivate, Workspace: l.Workspace, WorkspaceID: l.WorkspaceID, MadeGitDir: l.MadeGitDir || prev.MadeGitDir}
	if l.Image != "" && prev.AgentImage != "" {
		// Booted from a committed image: the built one is still the one
		// to rebuild from.
		ld.AgentImage = prev.AgentImage
	}
	if ld.BuildArgs == nil {
		ld.BuildArgs = map[string]string{}
	}
	b, err := json.MarshalIndent(ld, "", "  ")
	if err != nil {
		return err
	}
	return state.WriteFileAtomic(filepath.Join(l.Store.BottleDir(l.Plan.Slug), LaunchFile), append(b, '\n'), 0o600)
}

// ReadLaunched reads a bottle's LaunchFile; a missing one is empty.
func ReadLaunched(st *state.Store, slug string) (Launched, error) {
	var ld Launched
	b, err := os.ReadFile(filepath.Join(st.BottleDir(slug), LaunchFile))
	if errors.Is(err, fs.ErrNotExist) {
		return ld, nil
	}
	if err != nil {
		return ld, err
	}
	if err := json.Unmarshal(b, &ld); err != nil {
		return ld, fmt.Errorf("reading %s: %w", filepath.Join(st.BottleDir(slug), LaunchFile), err)
	}
	return ld, nil
}
