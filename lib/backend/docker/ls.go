package docker

import (
	"context"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/state"
)

// Statuses of a bottle in a listing.
const (
	// StatusRunning: its agent container runs (or is paused for a commit).
	StatusRunning = "running"
	// StatusStopped: its agent container exists but has exited.
	StatusStopped = "stopped"
	// StatusMissing: the engine has no agent container for it (stopped and
	// removed; resume boots it again).
	StatusMissing = "missing"
	// StatusUnknown: the engine could not be asked, or the bottle runs on
	// another backend.
	StatusUnknown = "unknown"
)

// Status is one bottle in bb-launch ls: its metadata and the engine's word.
type Status struct {
	Slug     string `json:"slug"`
	Agent    string `json:"agent"`
	Template string `json:"template"`
	Label    string `json:"label"`
	// Color is the bottle's colour as its plan has it: a palette name or
	// #rrggbb; "" for none.
	Color string `json:"color"`
	// Display is how a person is shown the bottle, as plain text (see
	// Display): ls's table writes it in Color on a terminal.
	Display        string    `json:"display"`
	Backend        string    `json:"backend"`
	Created        time.Time `json:"created"`
	Preserved      bool      `json:"preserved"`
	Status         string    `json:"status"`
	AgentContainer string    `json:"agent_container"`
	Images         int       `json:"images"`
}

// List returns every bottle in st, oldest first, with its live status; api
// may be nil (no engine): then the status is unknown. Unreadable metadata
// is reported in the error while the others are listed.
func List(ctx context.Context, api Engine, st *state.Store) ([]Status, error) {
	mds, lerr := st.List()
	out := make([]Status, 0, len(mds))
	for _, md := range mds {
		s := Status{Slug: md.Slug, Agent: md.Agent, Template: md.Template, Label: md.Label, Color: md.Color,
			Display: Display(md.Label, md.Agent),
			Backend: md.Backend, Created: md.Created, Preserved: md.Preserved, Images: len(md.Images),
			Status: StatusUnknown, AgentContainer: names.Agent(md.Slug)}
		if api != nil && md.Backend == names.Docker {
			cs, err := bottleContainers(ctx, api, md.Slug, names.RoleAgent)
			if err != nil {
				return nil, err
			}
			s.Status = StatusMissing
			if len(cs) > 0 {
				c := cs[0]
				if len(c.Names) > 0 {
					s.AgentContainer = trimSlash(c.Names[0])
				}
				s.Status = StatusStopped
				if c.State == container.StateRunning || c.State == container.StatePaused {
					s.Status = StatusRunning
				}
			}
		}
		out = append(out, s)
	}
	return out, lerr
}

// Display is how a person is shown a bottle: its label, then its agent's
// name in parentheses, always both (so the shape is the same on every
// line, even where the label is the agent's name): "bob (claude-implementer)".
// A bottle without a label shows its agent's name alone.
func Display(label, agent string) string {
	switch {
	case label == "":
		return agent
	case agent == "":
		return label
	}
	return label + " (" + agent + ")"
}

func trimSlash(s string) string {
	if len(s) > 0 && s[0] == '/' {
		return s[1:]
	}
	return s
}
