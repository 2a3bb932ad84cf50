package backend

import (
	"context"
	"fmt"
	"time"

	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/state"
)

// Listed is one bottle in bb-launch ls: its metadata and its backend's word.
type Listed struct {
	Slug     string `json:"slug"`
	Agent    string `json:"agent"`
	Template string `json:"template"`
	Label    string `json:"label"`
	// Color is the bottle's colour as its plan has it: a palette name or
	// #rrggbb; "" for none.
	Color string `json:"color"`
	// Display is how a person is shown the bottle, as plain text (see
	// Display): ls's table writes it in Color on a terminal.
	Display   string    `json:"display"`
	Backend   string    `json:"backend"`
	Created   time.Time `json:"created"`
	Preserved bool      `json:"preserved"`
	// Status is what the bottle is now, for people and scripts:
	// "running" (its agent runs), "exited" (its agent ended and its
	// container is kept, with what it holds: a preserved bottle), "stopped"
	// (its containers are gone; its state, snapshots and own repository
	// stay, and resume boots it) or "unknown" (its backend could not be
	// asked). ExitCode is the exited agent's status.
	Status         string `json:"status"`
	ExitCode       *int   `json:"exit_code,omitempty"`
	AgentContainer string `json:"agent_container"`
	Images         int    `json:"images"`
}

// A listed bottle's statuses (Listed.Status).
const (
	ListRunning = "running"
	ListExited  = "exited"
	ListStopped = "stopped"
	ListUnknown = StatusUnknown
)

// Opener opens a backend by name (Open, with the command's Config).
type Opener func(ctx context.Context, name string) (Backend, error)

// List returns every bottle in st, oldest first, with its live status from
// its backend, each backend opened once, when a bottle of it is first met.
// A backend that cannot be opened or asked leaves its bottles' status
// unknown, and is told to warn once. Unreadable metadata is reported in the
// error while the others are listed.
func List(ctx context.Context, st *state.Store, open Opener, warn func(error)) ([]Listed, error) {
	mds, lerr := st.List()
	out := make([]Listed, 0, len(mds))
	opened := map[string]Backend{}
	defer func() {
		for _, b := range opened {
			if b != nil {
				b.Close()
			}
		}
	}()
	for _, md := range mds {
		s := Listed{Slug: md.Slug, Agent: md.Agent, Template: md.Template, Label: md.Label, Color: md.Color,
			Display: Display(md.Label, md.Agent),
			Backend: md.Backend, Created: md.Created, Preserved: md.Preserved, Images: len(md.Images),
			Status: StatusUnknown, AgentContainer: names.Agent(md.Slug)}
		b, ok := opened[md.Backend]
		if !ok {
			var err error
			if b, err = open(ctx, md.Backend); err != nil {
				warn(fmt.Errorf("the status is unknown: %w", err))
				b = nil
			}
			opened[md.Backend] = b
		}
		if b != nil {
			bs, err := b.Status(ctx, md.Slug)
			if err != nil {
				// One backend that cannot answer does not hide the others'
				// bottles: it is asked no more.
				warn(fmt.Errorf("the status is unknown: %w", err))
				opened[md.Backend] = nil
				b.Close()
				out = append(out, s)
				continue
			}
			switch bs.Agent {
			case StatusUnknown:
				s.Status = ListUnknown
			case StatusRunning:
				s.Status = ListRunning
			case StatusStopped:
				s.Status = ListExited
				if bs.ExitCode >= 0 {
					code := bs.ExitCode
					s.ExitCode = &code
				}
			default:
				s.Status = ListStopped
			}
			if bs.AgentName != "" {
				s.AgentContainer = bs.AgentName
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
