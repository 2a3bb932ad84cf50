// Package names holds what names a bottle's resources, once for the plan,
// every backend and every command: the backends' names, the labels on every
// container, network, VM and image bb makes (bb.slug, bb.role, bb.agent,
// bb.test), their roles, and the bot-bottle- prefix of every resource's
// name. It imports nothing of bb, so anything may import it.
package names

// Backends a bottle can run on, as plans and metadata record them.
const (
	Docker         = "docker"
	MacOSContainer = "macos-container"
	Smolvm         = "smolvm"
)

// Backends lists the backends in the order messages name them.
var Backends = []string{Docker, MacOSContainer, Smolvm}

// formerBackends are names metadata was once written with: bb-freeze
// called Apple's container backend "container".
var formerBackends = map[string]string{"container": MacOSContainer}

// Backend returns the name of the backend that metadata recorded as name:
// name itself, or today's name of a former one ("container" is
// macos-container). None stays none (see backend.Of).
func Backend(name string) string {
	if now, ok := formerBackends[name]; ok {
		return now
	}
	return name
}

// Label keys on a bottle's resources.
const (
	// LabelSlug names the bottle a resource belongs to: how ls, stop and a
	// crashed launch's cleanup find it.
	LabelSlug = "bb.slug"
	// LabelAgent is the agent's name in the manifest index.
	LabelAgent = "bb.agent"
	// LabelRole says what a resource is to its bottle (RoleAgent, ...).
	LabelRole = "bb.role"
	// LabelLaunch is on every container and network of one launch, so that
	// its undo finds one whose creation was cut off before the engine
	// could say its ID.
	LabelLaunch = "bb.launch"
	// LabelTest marks what tests make (bb.test=1), and LabelTestRun the
	// test binary that made it, so that it sweeps its own and not those of
	// tests running beside it.
	LabelTest    = "bb.test"
	LabelTestRun = "bb.test.run"
)

// Roles (LabelRole values).
const (
	RoleAgent    = "agent"
	RoleEgress   = "egress"
	RoleSnapshot = "snapshot"
	RoleImage    = "image"
	// RoleGit is the bottle's own git repository (a volume): the agent's
	// commits, never the person's .git.
	RoleGit = "git"
)

// Prefix starts the name of every container, network and VM of a bottle.
const Prefix = "bot-bottle-"

// Agent is the name of a bottle's agent container or VM.
func Agent(slug string) string { return Prefix + slug }

// Sidecar is the name of a bottle's egress sidecar container or VM.
func Sidecar(slug string) string { return Prefix + slug + "-egress" }

// GitVolume is the name of a bottle's own git repository, a volume mounted
// at <workdir>/.git in its agent.
func GitVolume(slug string) string { return Prefix + slug + "-git" }
