package plan

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/state"
)

// WorkspaceHint is what a person can do about a workspace that is refused.
const WorkspaceHint = "give the bottle a project folder as its workspace (workspace: in bb.yaml), or run bb-launch from that folder"

// CheckWorkspace refuses a workspace the agent must not get read-write:
// the root, the home folder itself, a folder holding bb's state directory
// (every bottle's routes, which the sidecar reloads, and CA keys) or one
// inside it. env gives HOME and the state directory's variables. It writes
// nothing; symlinks are resolved where they exist. bb-launch checks more
// (token files, the engine's socket) when it knows the folder it mounts.
func CheckWorkspace(ws string, env func(string) string) error {
	if !filepath.IsAbs(ws) {
		return exit.Usagef("the workspace %q is not an absolute path", ws)
	}
	real := ResolvePath(ws)
	refuse := func(why string) error {
		return exit.Usage(fmt.Errorf("refusing the workspace %s: %s", ws, why), WorkspaceHint)
	}
	if real == "/" {
		return refuse("it is the host's root, every file of the host would be the agent's to change")
	}
	if home := env("HOME"); home != "" && filepath.IsAbs(home) && real == ResolvePath(home) {
		return refuse("it is your home folder, with your keys, tokens and bb's own state in it")
	}
	if dir, err := state.Dir(env); err == nil {
		dir = ResolvePath(dir)
		if Within(real, dir) {
			return refuse(fmt.Sprintf("it holds bb's state folder %s (the bottles' routes and CA keys)", dir))
		}
		if Within(dir, real) {
			return refuse(fmt.Sprintf("it is inside bb's state folder %s", dir))
		}
	}
	return nil
}

// ResolvePath is p absolute, clean and with its symlinks resolved, as far
// as it exists: a missing tail is joined to its resolved parent.
func ResolvePath(p string) string {
	p, err := filepath.Abs(p)
	if err != nil {
		return filepath.Clean(p)
	}
	var tail []string
	for {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(append([]string{r}, tail...)...)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(append([]string{p}, tail...)...)
		}
		tail = append([]string{filepath.Base(p)}, tail...)
		p = parent
	}
}

// Within reports whether p is dir or under it (both clean and absolute).
func Within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(os.PathSeparator))
}
