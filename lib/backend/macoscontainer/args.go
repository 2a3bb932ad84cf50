package macoscontainer

import (
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/bb-bottles/bb/lib/plan"
)

// Where things are in a bottle's containers.
const (
	// GuestDir is the agent's read-only view of the bottle's guest folder:
	// the static bb-egress (GuestBinary) and the init's spec (SpecFile).
	GuestDir    = "/bb/guest"
	GuestBinary = GuestDir + "/bb-egress"
	SpecFile    = GuestDir + "/spec.json"
	// AgentSocket is the sidecar's socket as the agent's container has it:
	// relayed by the runtime from the host's end of SidecarSocket.
	AgentSocket = "/bb/egress.sock"
	// SidecarSocket is where bb-egress listens in the sidecar's container,
	// on its root filesystem, where the runtime's relay finds it.
	SidecarSocket = "/bb/sock/egress.sock"
	// AttachSocket is where the agent's init takes attach clients.
	AttachSocket = "/run/bb/attach.sock"
)

// agentCaps are what the agent's container keeps, for its init alone: to
// give the agent its home and files (CHOWN, DAC_OVERRIDE, FOWNER), to become
// the agent (SETUID, SETGID) and to empty its bounding set (SETPCAP). The
// init gives them all up before the agent's command runs. Nothing in them
// reaches a network: the agent's machine has no network device.
var agentCaps = []string{"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "SETPCAP"}

// mountSpec is one mount of the agent's container: a host file or folder
// (read-only or not), or a named volume of the bottle's.
type mountSpec struct {
	Source   string // host path, or a volume's name when Volume
	Target   string
	ReadOnly bool
	Volume   bool
}

// volumeArg is the --volume value: "src:dst[:ro]" (docs/command-reference.md,
// "-v, --volume"; Parser.volume: a source with a "/" is a host path, any
// other a named volume).
func (m mountSpec) volumeArg() string {
	v := m.Source + ":" + m.Target
	if m.ReadOnly {
		v += ":ro"
	}
	return v
}

// cpus is the plan's CPUs as the CLI takes them: whole, at least one.
func cpus(l plan.Limits) string {
	n := int(math.Ceil(l.CPUs))
	return strconv.Itoa(max(n, 1))
}

// memory is the plan's memory in whole MiB, the CLI's granularity.
func memory(l plan.Limits, floor plan.Limits) string {
	b := l.MemoryBytes
	if b <= 0 {
		b, _ = plan.ParseMemory(floor.Memory)
	}
	return strconv.FormatInt(max(b>>20, 64), 10) + "M"
}

func labelArgs(labels map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		out = append(out, "--label", k+"="+labels[k])
	}
	return out
}

// sidecarCreate is `container create` of the sidecar: on network (the
// default one: its way out), as the person's uid (who owns the egress folder
// it writes), no capability, its socket published at socket on this
// machine, the token values inherited from the CLI's environment by name
// (tokenNames), never on a command line.
func sidecarCreate(name, image string, labels map[string]string, uid, gid int, lim plan.Limits,
	egressDir string, e plan.Egress, network, socket string, tokenNames []string, serve []string) []string {
	args := []string{"create", "--name", name}
	args = append(args, labelArgs(labels)...)
	args = append(args, "--user", fmt.Sprintf("%d:%d", uid, gid), "--cap-drop", "ALL", "--network", network,
		"--cpus", cpus(lim), "--memory", memory(lim, plan.SidecarLimits),
		"--volume", egressDir+":"+e.Dir,
		"--publish-socket", socket+":"+SidecarSocket)
	for _, n := range tokenNames {
		args = append(args, "--env", n)
	}
	args = append(args, image, "--listen", "unix:"+SidecarSocket, "--routes", e.RoutesFile, "--ca-dir", e.CADir, "--log", e.LogFile)
	return append(args, serve...)
}

// agentCreate is `container create` of the agent: no network at all (the
// sidecar's socket is its one way out) and no DNS, the init (bb-egress
// guest init, run by the runtime's --init, which reaps and forwards
// signals) as root with agentCaps only, the workspace and mounts, the
// plan's environment from envFile, the plan's limits.
func agentCreate(name, image string, labels map[string]string, a plan.Agent, lim plan.Limits,
	guestDir, socket string, mounts []mountSpec, envFile string) []string {
	args := []string{"create", "--name", name}
	args = append(args, labelArgs(labels)...)
	args = append(args, "--user", "0:0", "--workdir", a.Workdir, "--entrypoint", GuestBinary, "--init",
		"--network", "none", "--no-dns", "--cap-drop", "ALL")
	for _, c := range agentCaps {
		args = append(args, "--cap-add", c)
	}
	args = append(args, "--cpus", cpus(lim), "--memory", memory(lim, plan.AgentLimits))
	if lim.PidsLimit > 0 {
		// RLIMIT_NPROC counts the agent's user's processes in its machine,
		// the agent's alone: a fork bomb stays in the bound.
		args = append(args, "--ulimit", fmt.Sprintf("nproc=%d", lim.PidsLimit))
	}
	args = append(args, "--volume", mountSpec{Source: guestDir, Target: GuestDir, ReadOnly: true}.volumeArg(),
		"--volume", mountSpec{Source: socket, Target: AgentSocket}.volumeArg())
	for _, m := range mounts {
		args = append(args, "--volume", m.volumeArg())
	}
	args = append(args, "--env-file", envFile, image, "guest", "init", "--spec", SpecFile, "--")
	return append(args, a.Command...)
}

// attachArgs is the session's `container exec`: the guest's attach client,
// as the agent's user, on a terminal.
func attachArgs(agent, user string) []string {
	return []string{"exec", "--interactive", "--tty", "--user", user, agent, GuestBinary, "guest", "attach", "--socket", AttachSocket}
}

// execArgs is bb-launch exec's `container exec`: cmd as the agent's user,
// in its working folder, with no new privileges, no input.
func execArgs(agent, user, workdir string, cmd []string) []string {
	args := []string{"exec", "--user", user}
	if workdir != "" {
		args = append(args, "--workdir", workdir)
	}
	args = append(args, agent, GuestBinary, "guest", "run", "--")
	return append(args, cmd...)
}

// buildArgs is `container build` of dockerfile in contextDir, tagged ref.
func buildArgs(dockerfile, ref string, buildArgs, labels map[string]string, contextDir string) []string {
	args := []string{"build", "--file", dockerfile, "--tag", ref}
	for _, k := range slices.Sorted(maps.Keys(buildArgs)) {
		args = append(args, "--build-arg", k+"="+buildArgs[k])
	}
	args = append(args, labelArgs(labels)...)
	return append(args, "--progress", "plain", contextDir)
}

// hostSocket is the published socket's path on this machine, in the
// bottle's folder. A unix socket's path has at most 103 bytes on macOS.
func hostSocket(bottleDir string) (string, error) {
	p := filepath.Join(bottleDir, "egress.sock")
	if len(p) > 103 {
		return "", fmt.Errorf("the sidecar's socket %s is longer than a socket's path may be (103 bytes)", p)
	}
	return p, nil
}
