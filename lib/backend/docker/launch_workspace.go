package docker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/bb-bottles/bb/lib/cli"
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
func (l *launch) checkWorkspace(context.Context) error {
	ws, from := l.p.Agent.Workspace, "the plan's workspace"
	if l.o.Resume {
		ld, err := ReadLaunched(l.o.Store, l.p.Slug)
		if err != nil {
			return cli.Usage(err)
		}
		if ld.Workspace != "" {
			// Wherever the resume runs from: the bottle keeps its folder.
			ws, from = ld.Workspace, "the workspace of the first launch"
		}
	}
	if ws == "" {
		ws, from = l.o.Dir, "the current folder (the plan has no workspace)"
	}
	if err := plan.CheckWorkspace(ws, l.o.Env); err != nil {
		return cli.WithHint(fmt.Errorf("%s: %w", from, err))
	}
	real, err := filepath.EvalSymlinks(ws)
	if err != nil {
		return cli.Usagef("%s %s: %w", from, ws, unwrapPathErr(err))
	}
	if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
		return cli.Usagef("%s %s is not a folder", from, ws)
	}
	for _, p := range l.protected() {
		if plan.Within(real, p.path) {
			return cli.Usage(fmt.Errorf("refusing %s %s: it holds %s %s, which the agent could read and change", from, ws, p.what, p.path),
				plan.WorkspaceHint)
		}
		if p.dir && plan.Within(p.path, real) {
			return cli.Usage(fmt.Errorf("refusing %s %s: it is inside %s %s", from, ws, p.what, p.path), plan.WorkspaceHint)
		}
	}
	l.workspace = real
	return nil
}

// protectedPath is a host path no folder the agent can write (or a build
// can read) may hold.
type protectedPath struct {
	what, path string
	dir        bool // nothing inside it is the agent's either
}

// protected lists the host paths the agent must never reach, resolved.
func (l *launch) protected() []protectedPath {
	ps := []protectedPath{{what: "bb's state folder", path: l.o.Store.Dir, dir: true}}
	if cfg := provider.ConfigDir(l.o.Env); cfg != "" {
		ps = append(ps, protectedPath{what: "bb's configuration", path: filepath.Dir(cfg), dir: true})
	}
	if home := l.o.Env("HOME"); home != "" {
		ps = append(ps, protectedPath{what: "bb's configuration", path: filepath.Join(home, ".config", "bot-bottle"), dir: true})
	}
	for _, s := range DockerSockets {
		ps = append(ps, protectedPath{what: "the Docker socket", path: s})
	}
	if h, ok := strings.CutPrefix(l.o.Env("DOCKER_HOST"), "unix://"); ok {
		ps = append(ps, protectedPath{what: "the Docker socket", path: h})
	}
	for _, t := range l.p.Egress.Tokens {
		if p := tokenPath(t, l.o.Env); p != "" {
			ps = append(ps, protectedPath{what: "the file of token " + t.Name, path: p})
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
