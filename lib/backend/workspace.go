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
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/provider"
)

// DockerSockets are where engines listen on a host; a workspace holding one
// would hand the agent the engine, and the host with it.
var DockerSockets = []string{"/var/run/docker.sock", "/run/docker.sock"}

// checkWorkspace resolves the folder the agent gets read-write (the one the
// first launch recorded, for a resume; else the plan's; else the folder
// bb-launch runs in) and refuses one that holds what the agent must never
// reach: the root, the home folder itself, bb's state (routes the sidecar
// reloads, CA keys), its configuration, a token file, the engine's socket.
func (l *Launching) checkWorkspace(context.Context) error {
	ws, from := l.Plan.Agent.Workspace, "the plan's workspace"
	if l.Resume {
		ld, err := ReadLaunched(l.Store, l.Plan.Slug)
		if err != nil {
			return exit.Usage(err)
		}
		if ld.Workspace != "" {
			// Wherever the resume runs from: the bottle keeps its folder.
			ws, from = ld.Workspace, "the workspace of the first launch"
		}
	}
	if ws == "" {
		ws, from = l.Dir, "the current folder (the plan has no workspace)"
	}
	if err := plan.CheckWorkspace(ws, l.Env); err != nil {
		return exit.WithHint(fmt.Errorf("%s: %w", from, err))
	}
	real, err := filepath.EvalSymlinks(ws)
	if err != nil {
		return exit.Usagef("%s %s: %w", from, ws, unwrapPathErr(err))
	}
	if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
		return exit.Usagef("%s %s is not a folder", from, ws)
	}
	for _, p := range l.protected() {
		if plan.Within(real, p.path) {
			return exit.Usage(fmt.Errorf("refusing %s %s: it holds %s %s, which the agent could read and change", from, ws, p.what, p.path),
				plan.WorkspaceHint)
		}
		if p.dir && plan.Within(p.path, real) {
			return exit.Usage(fmt.Errorf("refusing %s %s: it is inside %s %s", from, ws, p.what, p.path), plan.WorkspaceHint)
		}
	}
	l.Workspace = real
	return l.checkBuildContext()
}

// BuildHint is what a person can do about a bottle Dockerfile the agent
// could change.
const BuildHint = "keep the bottle's Dockerfile and its folder outside the folder the agent can write (the workspace)"

// checkBuildContext refuses an agent image built from what the agent can
// write (its Dockerfile would run at the next launch, with the network,
// on the engine's default bridge), or from a folder holding a token file
// or bb's state (they would be baked into a layer).
func (l *Launching) checkBuildContext() error {
	df := l.Plan.Agent.Dockerfile
	if df.Path == "" || l.Image != "" {
		return nil
	}
	ctxDir := df.Context
	if ctxDir == "" {
		ctxDir = filepath.Dir(df.Path)
	}
	file, dir := plan.ResolvePath(df.Path), plan.ResolvePath(ctxDir)
	switch {
	case plan.Within(l.Workspace, file):
		return exit.Usage(fmt.Errorf("refusing the Dockerfile %s: it is in the workspace %s, where the agent can change it", df.Path, l.Workspace), BuildHint)
	case plan.Within(l.Workspace, dir):
		return exit.Usage(fmt.Errorf("refusing the build context %s: it is in the workspace %s, where the agent can change it", ctxDir, l.Workspace), BuildHint)
	case plan.Within(dir, l.Workspace):
		return exit.Usage(fmt.Errorf("refusing the build context %s: it holds the workspace %s, whose files the agent can change", ctxDir, l.Workspace), BuildHint)
	}
	for _, p := range l.protected() {
		if p.build && plan.Within(dir, p.path) {
			return exit.Usage(fmt.Errorf("refusing the build context %s: it holds %s %s, which would be baked into the image", ctxDir, p.what, p.path),
				"give the bottle's Dockerfile a folder of its own")
		}
	}
	return nil
}

// protectedPath is a host path no folder the agent can write (or a build
// can read) may hold.
type protectedPath struct {
	what, path string
	dir        bool // nothing inside it is the agent's either
	build      bool // no build context may hold it
}

// protected lists the host paths the agent must never reach, resolved.
func (l *Launching) protected() []protectedPath {
	ps := []protectedPath{{what: "bb's state folder", path: l.Store.Dir, dir: true, build: true}}
	if cfg := provider.ConfigDir(l.Env); cfg != "" {
		ps = append(ps, protectedPath{what: "bb's configuration", path: filepath.Dir(cfg), dir: true})
	}
	if home := l.Env("HOME"); home != "" {
		ps = append(ps, protectedPath{what: "bb's configuration", path: filepath.Join(home, ".config", "bot-bottle"), dir: true})
	}
	for _, s := range DockerSockets {
		ps = append(ps, protectedPath{what: "the Docker socket", path: s})
	}
	if h, ok := strings.CutPrefix(l.Env("DOCKER_HOST"), "unix://"); ok {
		ps = append(ps, protectedPath{what: "the Docker socket", path: h})
	}
	for _, t := range l.Plan.Egress.Tokens {
		if p := tokenPath(t, l.Env); p != "" {
			ps = append(ps, protectedPath{what: "the file of token " + t.Name, path: p, build: true})
		}
	}
	for i := range ps {
		ps[i].path = plan.ResolvePath(ps[i].path)
	}
	return ps
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

// Mount is a host path bound into the agent.
type Mount struct {
	Source, Target string
	ReadOnly       bool
}

// GitMounts keep the host's git from running what the agent writes: git
// runs hooks, and commands named in .git/config (core.fsmonitor,
// core.hooksPath, a filter's), when the person next works in the checkout
// on the host. So .git/config and .git/hooks are mounted read-only over
// the workspace, and .git itself is a mount of its own, which the agent
// cannot rename away to put another in its place; it still commits
// (objects, refs and the index stay writable). A hooks folder is made when
// there is none, or the agent could make one. A .git file (a worktree's or
// a submodule's "gitdir:") is read-only, so it cannot point elsewhere.
func GitMounts(ws, workdir string) ([]Mount, error) {
	gitPath := filepath.Join(ws, ".git")
	target := path.Join(workdir, ".git")
	real, err := filepath.EvalSymlinks(gitPath)
	if err != nil {
		return nil, nil // not a checkout (or a dangling link, the agent's to replace as any file)
	}
	fi, err := os.Stat(real)
	switch {
	case err != nil:
		return nil, nil
	case fi.Mode().IsRegular():
		return []Mount{{Source: real, Target: target, ReadOnly: true}}, nil
	case !fi.IsDir():
		return nil, nil
	}
	ms := []Mount{{Source: real, Target: target}}
	if fi, err := os.Lstat(filepath.Join(real, "config")); err == nil && fi.Mode().IsRegular() {
		ms = append(ms, Mount{Source: filepath.Join(real, "config"), Target: path.Join(target, "config"), ReadOnly: true})
	}
	hooks := filepath.Join(real, "hooks")
	if err := os.Mkdir(hooks, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, exit.Backend(fmt.Errorf("making %s: %w", hooks, err))
	}
	if fi, err := os.Lstat(hooks); err != nil || !fi.IsDir() {
		return nil, exit.Usagef("%s is not a folder: the agent could put hooks there", hooks)
	}
	ms = append(ms, Mount{Source: hooks, Target: path.Join(target, "hooks"), ReadOnly: true})
	return ms, nil
}
