package plan

import (
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/state"
	"github.com/bb-bottles/bb/lib/workspace"
)

// WorkspaceHint is what a person can do about a workspace that is refused.
const WorkspaceHint = workspace.Hint

// CheckWorkspace refuses a workspace the agent must not get read-write, by
// the rules every mount is held to (lib/workspace): the root, the home
// folder or a folder holding it, folders of credentials (~/.ssh, ~/.aws,
// ...), the host's own folders, bb's state folder, the engine's socket.
// env gives HOME and the state directory's variables. It writes nothing;
// symlinks are resolved where they exist. bb-launch checks again, with
// more (token files), each time it mounts the folder.
func CheckWorkspace(ws string, env func(string) string) error {
	dir, _ := state.Dir(env)
	if _, err := workspace.Check(ws, workspace.Rules(env, dir)); err != nil {
		return exit.Usage(err, WorkspaceHint)
	}
	return nil
}

// ResolvePath is workspace.Resolve.
func ResolvePath(p string) string { return workspace.Resolve(p) }

// Within is workspace.Within.
func Within(dir, p string) bool { return workspace.Within(dir, p) }
