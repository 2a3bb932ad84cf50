package docker

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/state"
)

// A plan without the security settings (hand-edited, old) still gets them:
// every capability dropped, no new privileges, pids and memory limits. And
// a bb-launch run as root does not run the sidecar as root.
func TestLaunchHardensWhateverThePlan(t *testing.T) {
	c := needBase(t)
	slug := newSlug("hard")
	p, _ := shellPlan(t, slug, nil)
	p.Docker.CapDrop, p.Docker.SecurityOpt = nil, nil
	p.Docker.Limits, p.Docker.SidecarLimits = plan.Limits{}, plan.Limits{PidsLimit: -1}
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	st := &state.Store{Dir: t.TempDir()}
	cleanupBottle(t, c, slug)
	o := launchOptions(t, p, raw, st)
	o.UID, o.GID = 0, 0 // as bb-launch run by root
	if _, err := Launch(t.Context(), c, o); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{p.Docker.AgentContainer, p.Docker.SidecarContainer} {
		in, err := c.ContainerInspect(t.Context(), name, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		hc := in.Container.HostConfig
		if !slices.Contains(hc.CapDrop, "ALL") || !slices.Contains(hc.SecurityOpt, "no-new-privileges") ||
			hc.PidsLimit == nil || *hc.PidsLimit <= 0 || hc.Memory <= 0 {
			t.Errorf("%s: cap_drop %v, security_opt %v, pids %v, memory %d", name, hc.CapDrop, hc.SecurityOpt, hc.PidsLimit, hc.Memory)
		}
		if name == p.Docker.SidecarContainer && in.Container.Config.User != "65532:65532" {
			t.Errorf("the sidecar runs as %q, want 65532:65532", in.Container.Config.User)
		}
	}
	// The sidecar's user owns its folder, and writes its log there.
	execIn(t, c, slug, "curl", "-s", "-o", "/dev/null", "https://denied.test.invalid/") // a line in the log
	dir := st.EgressDir(slug)
	for _, f := range []string{"", state.CAKeyFile, state.RoutesFile, state.AuditLogFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Errorf("egress folder: %v", err)
			continue
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != SidecarUser {
			t.Errorf("%s is owned by %d, want %d", filepath.Join(dir, f), uid, SidecarUser)
		}
	}
}

// A plan that switches a confinement off is refused before anything is made.
func TestLaunchRefusesUnconfined(t *testing.T) {
	c := needEngine(t)
	for _, opt := range []string{"seccomp=unconfined", "apparmor:unconfined", "label=disable", "no-new-privileges:false"} {
		slug := newSlug("unconf")
		p, _ := shellPlan(t, slug, nil)
		p.Docker.SecurityOpt = []string{"no-new-privileges", opt}
		raw, _ := json.Marshal(p)
		st := &state.Store{Dir: t.TempDir()}
		_, err := Launch(t.Context(), c, launchOptions(t, p, raw, st))
		if exit.CodeOf(err) != exit.CodeUsage || !strings.Contains(err.Error(), "switches a confinement off") {
			t.Errorf("%s: %v", opt, err)
		}
		assertGone(t, c, slug)
	}
}

// An agent user the image does not have is refused, not guessed (its home
// would be /, given to the agent).
func TestLaunchRefusesUnknownUser(t *testing.T) {
	c := needBase(t)
	slug := newSlug("nouser")
	p, _ := shellPlan(t, slug, nil)
	p.Agent.User = "4242"
	raw, _ := json.Marshal(p)
	st := &state.Store{Dir: t.TempDir()}
	cleanupBottle(t, c, slug)
	_, err := Launch(t.Context(), c, launchOptions(t, p, raw, st))
	var se *StepError
	if !errors.As(err, &se) || se.Step != "provisioning the agent" || exit.CodeOf(err) != exit.CodeUsage ||
		!strings.Contains(err.Error(), `the agent's user "4242" is not in the image's /etc/passwd`) {
		t.Errorf("Launch = %v (exit %d)", err, exit.CodeOf(err))
	}
}

// Bounded by default: the agent's scratch space is memory with a size (a
// full disk is not the agent's to make), its CPUs are fewer than the
// engine's, and the sidecar, on both networks, routes no packet between
// them.
func TestLaunchBounds(t *testing.T) {
	c := needBase(t)
	slug := newSlug("bounds")
	p, raw := shellPlan(t, slug, nil)
	st := &state.Store{Dir: t.TempDir()}
	cleanupBottle(t, c, slug)
	rec, err := Launch(t.Context(), c, launchOptions(t, p, raw, st))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"/tmp", "/var/tmp"} {
		code, out, errs := execIn(t, c, slug, "sh", "-c",
			"dd if=/dev/zero of="+dir+"/fill bs=1M count=1100 2>&1; rc=$?; rm -f "+dir+"/fill; exit $rc")
		if code == 0 || !strings.Contains(out+errs, "No space left") {
			t.Errorf("writing 1.1 GiB to %s: exit %d\n%s%s", dir, code, out, errs)
		}
	}
	info, err := c.Info(t.Context(), client.InfoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := c.ContainerInspect(t.Context(), p.Docker.AgentContainer, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := in.Container.HostConfig.NanoCPUs; n <= 0 || n >= int64(info.Info.NCPU)*1e9 {
		t.Errorf("the agent may use %d nano-CPUs of the engine's %d CPUs", n, info.Info.NCPU)
	}
	// The writable layer: bounded where the engine's storage takes a size,
	// and the record says which.
	size := in.Container.HostConfig.StorageOpt["size"]
	if st := storageOf(info.Info.Driver, info.Info.DriverStatus); st.sized() && size == "" && !strings.Contains(rec.DiskLimit, "turned the size down") {
		t.Errorf("storage %s on %s takes a size, but the agent has none (record: %q)", st.driver, st.backing, rec.DiskLimit)
	}
	if (size != "") != (rec.DiskLimit == size) || rec.DiskLimit == "" {
		t.Errorf("the agent's writable layer: StorageOpt size %q, record says %q", size, rec.DiskLimit)
	}
	// The sidecar's image has no shell: a container in its network
	// namespace reads its forwarding switches.
	sc, err := c.ContainerInspect(t.Context(), p.Docker.SidecarContainer, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := runInNetns(t, c, sc.Container.ID, "cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv6/conf/all/forwarding")
	if strings.Fields(out) == nil || strings.Join(strings.Fields(out), " ") != "0 0" {
		t.Errorf("the sidecar's forwarding: %q, want 0 0", out)
	}
}

// runInNetns runs script in a throwaway container of the base image in
// container id's network namespace, and returns what it printed.
func runInNetns(t *testing.T, c *client.Client, id, script string) string {
	t.Helper()
	cmd := exec.Command("docker", "run", "--rm", "--network", "container:"+id, "--label", LabelTest+"=1",
		"--label", labelTestRun+"="+testRun, BaseImage, "sh", "-c", script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s in %s's network: %v\n%s", script, id, err, out)
	}
	return string(out)
}
