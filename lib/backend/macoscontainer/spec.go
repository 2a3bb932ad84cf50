package macoscontainer

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/guest"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/provider"
	"github.com/bb-bottles/bb/lib/workspace"
)

// guestSpec is what the agent's init carries out before the agent's
// command starts, from the plan: the bottle's CA at the plan's ca_file and
// in the system's bundle (root's), the git configuration, the plan's files
// and the prompt (the agent's, in its home), bb.egress on loopback, where
// the relay to the sidecar's socket listens.
//
// seed, when the bottle's own git repository is new, is its first files,
// at gitDir (its volume's mount point): the init gives the folder to the
// agent, who then writes them.
func guestSpec(p *plan.Plan, caPEM []byte, attach bool, gitDir string, seed []workspace.File) (guest.Spec, error) {
	a := p.Agent
	s := guest.Spec{
		User: a.User,
		Home: a.Home,
		Files: []guest.File{
			{Path: a.CAFile, Mode: 0o644, Owner: guest.OwnerRoot, Content: caPEM},
			{Path: backend.SystemCABundle, Mode: 0o644, Owner: guest.OwnerRoot, Content: caPEM, AppendOnce: true},
			{Path: "~/.gitconfig", Mode: 0o644, Owner: guest.OwnerAgent, Content: backend.GitConfig(a.GitUser, p.Egress.Routes)},
		},
		Hosts:      []string{"127.0.0.1 " + p.Egress.Host},
		Relay:      guest.Relay{Listen: "127.0.0.1:" + strconv.Itoa(p.Egress.Port), Socket: AgentSocket, Mode: 0o666},
		Socket:     AttachSocket,
		WaitAttach: attach,
	}
	hasPrompt := false
	for _, f := range a.Files {
		mode, err := f.FileMode()
		if err != nil {
			return guest.Spec{}, fmt.Errorf("plan agent.files: %w", err)
		}
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path {
			return guest.Spec{}, fmt.Errorf("plan agent.files: %s is not a clean absolute path", f.Path)
		}
		if a.Home != "" && !strings.HasPrefix(f.Path, a.Home+"/") {
			return guest.Spec{}, fmt.Errorf("plan agent.files: %s is not in the agent's home %s", f.Path, a.Home)
		}
		s.Files = append(s.Files, guest.File{Path: f.Path, Mode: uint32(mode.Perm()), Owner: guest.OwnerAgent,
			Content: []byte(f.Content), Keep: f.Keep})
		hasPrompt = hasPrompt || (a.Home != "" && f.Path == path.Join(a.Home, provider.PromptFile))
	}
	if a.Prompt != "" && !hasPrompt {
		s.Files = append(s.Files, guest.File{Path: "~/" + provider.PromptFile, Mode: 0o644, Owner: guest.OwnerAgent, Content: []byte(a.Prompt)})
	}
	if gitDir != "" {
		s.AgentDirs = append(s.AgentDirs, gitDir)
		for _, f := range seed {
			s.Files = append(s.Files, guest.File{Path: path.Join(gitDir, f.Path), Mode: uint32(f.Mode.Perm()),
				Owner: guest.OwnerAgent, Dir: f.Mode.IsDir(), Content: f.Data})
		}
	}
	if err := s.Check(); err != nil {
		return guest.Spec{}, fmt.Errorf("the agent's guest spec: %w", err)
	}
	return s, nil
}
