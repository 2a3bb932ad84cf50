package backend

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/provider"
	"github.com/bb-bottles/bb/lib/trust"
	"github.com/bb-bottles/bb/lib/workspace"
)

// DockerSockets are where engines listen on a host; a workspace holding one
// would hand the agent the engine, and the host with it.
var DockerSockets = workspace.DockerSockets

// checkWorkspace resolves the folder the agent gets read-write (the one the
// first launch recorded, for a resume; else the plan's; else the folder
// bb-launch runs in) and checks it against the rules every mount is held
// to (lib/workspace), every time: a resumed bottle's folder must still be
// the one it had, no link put in its place. Then it plans what the agent
// gets of git (its own repository, never the person's .git), refuses a
// manifest or prompt file in a workspace that the person did not trust,
// and says when another running bottle shares the folder.
func (l *Launching) checkWorkspace(ctx context.Context) error {
	ws, from := l.Plan.Agent.Workspace, "the plan's workspace"
	var recorded Launched
	if l.Resume {
		ld, err := ReadLaunched(l.Store, l.Plan.Slug)
		if err != nil {
			return exit.Usage(err)
		}
		if ld.Workspace != "" {
			// Wherever the resume runs from: the bottle keeps its folder.
			ws, from, recorded = ld.Workspace, "the workspace of the first launch", ld
		}
	}
	if ws == "" {
		ws, from = l.Dir, "the current folder (the plan has no workspace)"
	}
	real, err := workspace.CheckDir(ws, l.rules())
	if err != nil {
		return exit.Usage(fmt.Errorf("%s: %w", from, err), workspace.Hint)
	}
	if recorded.Workspace == "" {
		// A link an agent left in a folder it has or had must not choose
		// what this bottle mounts.
		if err := workspace.NotThroughLinksIn(ws, l.knownWorkspaces()); err != nil {
			return exit.Usage(fmt.Errorf("%s: %w", from, err), workspace.Hint)
		}
	}
	if recorded.Workspace != "" {
		if err := workspace.Same(recorded.Workspace, recorded.WorkspaceID); err != nil {
			return exit.Usage(fmt.Errorf("%s: %w", from, err),
				"look at what is there now; a bottle is only ever resumed on the folder it was launched on",
				fmt.Sprintf("'bb-launch stop --rm %s' removes the bottle; then start a new one on the folder you mean", l.Plan.Slug))
		}
	}
	l.Workspace = real
	l.WorkspaceID, _ = workspace.IDOf(real)
	if l.Git, err = workspace.PlanGit(real); err != nil {
		return exit.Usage(fmt.Errorf("%s: %w", from, err), workspace.Hint)
	}
	for _, n := range l.Git.Notes {
		fmt.Fprintf(l.Progress, "bb-launch: note: %s\n", n)
	}
	if err := l.checkTrust(); err != nil {
		return err
	}
	if err := l.checkShared(ctx); err != nil {
		return err
	}
	if err := l.checkBuildContext(); err != nil {
		return err
	}
	// The folder stays the agent's writing after the bottle is gone.
	if err := trust.Open(l.Store.Dir).Remember(real); err != nil {
		return exit.Backend(err)
	}
	return nil
}

// rules are the paths no mount may hold or lie in: the host's and the
// person's (lib/workspace), bb's configuration, and the token files.
func (l *Launching) rules() []workspace.Protected {
	ps := workspace.Rules(l.Env, l.Store.Dir)
	if cfg := provider.ConfigDir(l.Env); cfg != "" {
		ps = append(ps, workspace.Protected{What: "bb's configuration", Path: filepath.Dir(cfg), Inside: true})
	}
	for _, t := range l.Plan.Egress.Tokens {
		if p := tokenPath(t, l.Env); p != "" {
			ps = append(ps, workspace.Protected{What: "the file of token " + t.Name, Path: p})
		}
	}
	return ps
}

// TrustHint is what a person does about a manifest bb-launch will not obey.
const TrustHint = "read it; if it is yours, trust it: bb-manifest --trust AGENT | bb-plan | bb-launch (bb start AGENT asks on a terminal)"

// checkTrust refuses a new bottle whose manifest or prompt file lies in a
// workspace (its own, or any bottle's) unless the person trusted that
// exact content: an agent may have written it. With Confirm (a person at
// a terminal) it shows the file, or its change, and asks.
func (l *Launching) checkTrust() error {
	if l.Resume || len(l.Plan.Manifest.Files) == 0 {
		return nil // a resume obeys the plan of the first launch
	}
	files := make([]trust.File, 0, len(l.Plan.Manifest.Files))
	for _, f := range l.Plan.Manifest.Files {
		files = append(files, trust.File{Path: f.Path, SHA256: f.SHA256})
	}
	wss := append([]string{l.Workspace}, l.knownWorkspaces()...)
	store := trust.Open(l.Store.Dir)
	pending, err := store.Pending(files, wss)
	if err != nil {
		return exit.Backend(err)
	}
	for _, p := range pending {
		if p.Now != nil && l.Confirm != nil {
			ok, err := l.Confirm(trust.Describe(p), fmt.Sprintf("trust %s as it is now?", p.Path))
			if err != nil {
				return err
			}
			if ok {
				if err := store.Trust(p.Path, p.Now); err != nil {
					return exit.Backend(err)
				}
				continue
			}
			return exit.Usage(fmt.Errorf("refusing %s: not trusted", p.Path), TrustHint)
		}
		why := "you have not trusted it"
		if p.Known {
			why = "it changed since you trusted it"
		}
		if p.Now == nil {
			why = "it changed while bb was reading it"
		}
		if p.TooLong {
			why = "it is too long to show for you to trust here: read it yourself first"
		}
		return exit.Usage(fmt.Errorf("refusing the manifest file %s: it %s, and %s", p.Path, p.Where(), why), TrustHint)
	}
	return nil
}

// knownWorkspaces are the folders every other bottle was launched on,
// removed ones too (lib/trust remembers them).
func (l *Launching) knownWorkspaces() []string {
	mds, _ := l.Store.List()
	out, _ := trust.Open(l.Store.Dir).Workspaces()
	for _, md := range mds {
		if md.Slug == l.Plan.Slug {
			continue
		}
		if ld, err := ReadLaunched(l.Store, md.Slug); err == nil && ld.Workspace != "" {
			out = append(out, ld.Workspace)
		}
	}
	return out
}

// checkShared looks for running bottles whose workspace overlaps this one.
// The same folder: the two agents can talk through its files, which the
// person is told. One folder inside the other is refused: the agent of
// the outer one could put a link where the inner one's folder, or its
// .git, is, and the next launch of the inner one would mount it.
func (l *Launching) checkShared(ctx context.Context) error {
	mds, _ := l.Store.List()
	for _, md := range mds {
		if md.Slug == l.Plan.Slug {
			continue
		}
		ld, err := ReadLaunched(l.Store, md.Slug)
		if err != nil || ld.Workspace == "" {
			continue
		}
		other := ld.Workspace
		same := other == l.Workspace
		if !same && !workspace.Within(other, l.Workspace) && !workspace.Within(l.Workspace, other) {
			continue
		}
		if !l.running(ctx, Of(md), md.Slug) {
			continue
		}
		if same {
			fmt.Fprintf(l.Progress, "bb-launch: note: bottle %s runs on the same workspace %s: the two agents can read and change each other's files there\n",
				md.Slug, other)
			continue
		}
		return exit.Usage(fmt.Errorf("the workspace %s and bottle %s's workspace %s lie one in the other, and %s runs: its agent could replace this bottle's folder",
			l.Workspace, md.Slug, other, md.Slug),
			fmt.Sprintf("stop it first ('bb-launch stop %s'), or give each bottle a folder of its own", md.Slug))
	}
	return nil
}

// running asks a bottle's backend whether its agent runs; a backend that
// cannot be asked counts as running (the refusal is the safe side).
func (l *Launching) running(ctx context.Context, backendName, slug string) bool {
	b := l.backend
	if b == nil || b.Name() != backendName {
		opened, err := Open(ctx, backendName, Config{Env: l.Env, Store: l.Store})
		if err != nil {
			return true
		}
		defer opened.Close()
		b = opened
	}
	st, err := b.Status(ctx, slug)
	return err != nil || st.Agent == StatusRunning
}

// BuildHint is what a person can do about a bottle Dockerfile the agent
// could change.
const BuildHint = "keep the bottle's Dockerfile and its folder outside the folder the agent can write (the workspace)"

// checkBuildContext refuses an agent image built from what the agent can
// write (its Dockerfile would run at the next launch, with the network,
// on the engine's default bridge) — in this bottle's workspace or any
// other's — or from a folder the rules protect (it would be baked into a
// layer: a token file, bb's state, a folder of credentials).
func (l *Launching) checkBuildContext() error {
	df := l.Plan.Agent.Dockerfile
	if df.Path == "" || l.Image != "" {
		return nil
	}
	ctxDir := df.Context
	if ctxDir == "" {
		ctxDir = filepath.Dir(df.Path)
	}
	file, dir := workspace.Resolve(df.Path), workspace.Resolve(ctxDir)
	wss := append([]string{l.Workspace}, l.knownWorkspaces()...)
	for _, p := range []string{df.Path, ctxDir} {
		if err := workspace.NotThroughLinksIn(p, wss); err != nil {
			return exit.Usage(fmt.Errorf("refusing the bottle's Dockerfile or build context: %w", err), BuildHint)
		}
	}
	for _, ws := range wss {
		switch {
		case workspace.Within(ws, file) || workspace.Within(ws, filepath.Clean(df.Path)):
			return exit.Usage(fmt.Errorf("refusing the Dockerfile %s: it is in the workspace %s, where an agent can change it", df.Path, ws), BuildHint)
		case workspace.Within(ws, dir):
			return exit.Usage(fmt.Errorf("refusing the build context %s: it is in the workspace %s, where an agent can change it", ctxDir, ws), BuildHint)
		case workspace.Within(dir, ws):
			return exit.Usage(fmt.Errorf("refusing the build context %s: it holds the workspace %s, whose files an agent can change", ctxDir, ws), BuildHint)
		}
	}
	if _, err := workspace.Check(dir, l.rules()); err != nil {
		var r *workspace.Refusal
		if errors.As(err, &r) {
			return exit.Usage(fmt.Errorf("refusing the build context %s: %s, which would be baked into the image", ctxDir, r.Why),
				"give the bottle's Dockerfile a folder of its own")
		}
		return exit.Usage(err)
	}
	return nil
}

// tokenPath is the host file a token is read from, ~ expanded; "" for a
// token from a variable (or a ~ with no HOME, which reading it refuses).
func tokenPath(t plan.Token, env func(string) string) string {
	if t.File == "" {
		return ""
	}
	if rest, ok := strings.CutPrefix(t.File, "~/"); ok {
		home := env("HOME")
		if home == "" {
			return ""
		}
		return filepath.Join(home, rest)
	}
	return t.File
}

// Mount is what a backend binds into the agent: a host path, or (Volume)
// a volume of the bottle's own, made when missing and removed with the
// bottle.
type Mount struct {
	Source, Target string
	ReadOnly       bool
	Volume         bool
}

// GitMounts are the mounts of the launch's git plan (workspace.PlanGit):
// the bottle's own repository over <workdir>/.git, the person's .git
// read-only at workspace.HostGitMount, or a .git file read-only over
// itself.
func (l *Launching) GitMounts() []Mount {
	var ms []Mount
	// Every name the workspace's disk takes for .git (.GIT, where case is
	// ignored) is masked as .git is (lib/workspace.GitAliases).
	var targets []string
	for _, n := range append([]string{".git"}, workspace.GitAliases(l.Workspace)...) {
		targets = append(targets, path.Join(l.Plan.Agent.Workdir, n))
	}
	for _, target := range targets {
		if l.Git.OwnRepo {
			ms = append(ms, Mount{Source: names.GitVolume(l.Plan.Slug), Target: target, Volume: true})
		}
		if l.Git.GitFile != "" {
			ms = append(ms, Mount{Source: l.Git.GitFile, Target: target, ReadOnly: true})
		}
	}
	if l.Git.HostGit != "" {
		ms = append(ms, Mount{Source: l.Git.HostGit, Target: workspace.HostGitMount, ReadOnly: true})
	}
	return ms
}

// GitSeed returns the files of the bottle's own repository as it starts,
// relative to <workdir>/.git: made from the person's repository when the
// workspace has one, none otherwise. A backend writes them, owned by the
// agent, when it makes the repository's volume (not when it finds it: the
// agent's repository is its own from then on).
func (l *Launching) GitSeed() ([]workspace.File, error) {
	files, notes, err := workspace.Seed(l.Git.Git, workspace.HostGitMount)
	if err != nil {
		return nil, exit.Usage(fmt.Errorf("seeding the bottle's git repository from %s: %w", l.Git.HostGit, err))
	}
	for _, n := range notes {
		fmt.Fprintf(l.Progress, "bb-launch: note: %s\n", n)
	}
	return files, nil
}

// MakeGitMountpoint makes <workspace>/.git, empty, where a workspace has
// none, so that the bottle's own repository is mounted on a folder the
// person owns rather than one the engine makes as root. Git on the host
// passes over an empty .git. It reports whether it made one.
func (l *Launching) MakeGitMountpoint() (bool, error) {
	if l.Git.Git.Kind != workspace.GitNone || l.Workspace == "" {
		return false, nil
	}
	err := os.Mkdir(filepath.Join(l.Workspace, ".git"), 0o755)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, exit.Backend(fmt.Errorf("making the workspace's .git: %w", err))
	}
	return true, nil
}

// NestedRepoBudget is how many entries of a workspace are looked at for
// repositories the agent may have left.
const NestedRepoBudget = 200_000

// NestedRepos warns (on w) of repositories nested in a bottle's workspace:
// the agent can write their configuration and hooks, which git on the
// host runs when the person works in them.
func NestedRepos(ws string) string {
	repos, complete := workspace.NestedRepos(ws, NestedRepoBudget)
	if len(repos) == 0 {
		if !complete {
			return fmt.Sprintf("the workspace %s has more than %d entries: bb did not look through all of it for git repositories the agent may have made", ws, NestedRepoBudget)
		}
		return ""
	}
	shown := repos
	if len(shown) > 10 {
		shown = shown[:10]
	}
	msg := fmt.Sprintf("the workspace %s holds git repositories the agent could write whole, configuration and hooks included: %s",
		ws, strings.Join(shown, ", "))
	if len(repos) > len(shown) {
		msg += fmt.Sprintf(" and %d more", len(repos)-len(shown))
	}
	return msg + "; git run in them on the host runs what they say: check their .git/config and hooks first"
}
