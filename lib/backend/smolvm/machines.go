package smolvm

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/names"
)

// machine is the part of one element of `smolvm machine ls --json` bb
// reads (src/cli/vm_common.rs machine_status_json at v1.9.3: name, state,
// image, labels, network, among others).
type machine struct {
	Name  string `json:"name"`
	State string `json:"state"`
	// Image is the local reference smolvm staged: local-archive:<hash> for
	// a `docker save` archive, local-dir:<path> for a folder; null for a
	// machine made from a VM-mode pack.
	Image  *string           `json:"image"`
	Labels map[string]string `json:"labels"`
}

// Machine states (src/config.rs RecordState, lowercase).
const (
	stateCreated     = "created"
	stateRunning     = "running"
	stateStopped     = "stopped"
	stateFailed      = "failed"
	stateUnreachable = "unreachable" // the VMM lives, its guest agent does not answer
	stateFrozen      = "frozen"      // a fork base; bb never makes one
)

// running says whether commands can run in m. An unreachable machine's
// VMM lives but cannot run anything; `machine start` recovers it.
func (m machine) running() bool { return m.State == stateRunning || m.State == stateFrozen }

// decodeMachines reads `machine ls --json`: an array (printed "[]" when
// there is none).
func decodeMachines(b []byte) ([]machine, error) {
	var ms []machine
	if err := json.Unmarshal(b, &ms); err != nil {
		return nil, fmt.Errorf("reading smolvm machine ls --json: %w", err)
	}
	return ms, nil
}

// machines lists every machine smolvm has.
func (t *tool) machines(ctx context.Context) ([]machine, error) {
	out, err := t.output(ctx, nil, "machine", "ls", "--json")
	if err != nil {
		return nil, fmt.Errorf("listing machines: %w", err)
	}
	ms, err := decodeMachines(out)
	if err != nil {
		return nil, exit.Backend(err)
	}
	return ms, nil
}

// bottle is what smolvm has of one bottle: its machines, by role.
type bottle struct {
	agent, sidecar *machine
	// all are every machine labelled with the bottle's slug or named as
	// its machines are.
	all []machine
}

// bottleOf finds slug's machines among ms: by the bb.slug label, or by
// name (a machine whose creation was cut off before smolvm stored its
// labels has its name).
func bottleOf(ms []machine, slug string) bottle {
	var b bottle
	for _, m := range ms {
		mine := m.Labels[names.LabelSlug] == slug
		switch {
		case m.Name == names.Agent(slug) || mine && m.Labels[names.LabelRole] == names.RoleAgent:
			if b.agent == nil || m.Name == names.Agent(slug) {
				b.agent = &m
			}
		case m.Name == names.Sidecar(slug) || mine && m.Labels[names.LabelRole] == names.RoleEgress:
			if b.sidecar == nil || m.Name == names.Sidecar(slug) {
				b.sidecar = &m
			}
		case !mine:
			continue
		}
		b.all = append(b.all, m)
	}
	return b
}

// find returns the machine named n, or nil.
func find(ms []machine, n string) *machine {
	i := slices.IndexFunc(ms, func(m machine) bool { return m.Name == n })
	if i < 0 {
		return nil
	}
	return &ms[i]
}
