package cmd_test

// Tests of what a person sees on a real terminal, driven through tmux: a
// detached session of a fixed size, keys sent with send-keys, the screen
// read with capture-pane -e, and the raw bytes the program wrote (escape
// sequences tmux itself acts on and never shows) read with pipe-pane.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/backend/docker"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/terminal"
)

// tmuxServer is a tmux server of the test's own (its own socket), killed
// when the test ends.
type tmuxServer struct {
	socket string
}

func needTmux(t *testing.T) *tmuxServer {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed (apt-get install tmux)")
	}
	// A short path: a socket's path has a small limit.
	dir, err := os.MkdirTemp("", "bbtmux")
	if err != nil {
		t.Fatal(err)
	}
	s := &tmuxServer{socket: filepath.Join(dir, "s")}
	t.Cleanup(func() {
		exec.Command("tmux", "-S", s.socket, "kill-server").Run()
		os.RemoveAll(dir)
	})
	return s
}

func (s *tmuxServer) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", s.socket}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// pane is one session's window: a 100×30 terminal running script (sh) in
// dir, its raw output copied to a file from the first byte.
type pane struct {
	t    *testing.T
	s    *tmuxServer
	name string
	raw  string
}

var paneSeq struct {
	sync.Mutex
	n int
}

// start runs script under sh in a new session, with env set and NO_COLOR
// unset. The script waits until pipe-pane is on, so that no output escapes
// the raw copy. Its last line prints "rc=<exit status>" and it then
// lingers, so the screen can still be read.
func (s *tmuxServer) start(t *testing.T, dir, script string, env ...string) *pane {
	t.Helper()
	paneSeq.Lock()
	paneSeq.n++
	p := &pane{t: t, s: s, name: fmt.Sprintf("p%d", paneSeq.n), raw: filepath.Join(dir, fmt.Sprintf("raw%d.out", paneSeq.n))}
	paneSeq.Unlock()
	goFile := p.raw + ".go"
	vars := append([]string{"PATH=" + binDir + string(os.PathListSeparator) + os.Getenv("PATH"),
		"LANG=C.UTF-8", "TERM=tmux-256color"}, env...)
	sh := "unset NO_COLOR COLORTERM\n"
	for _, kv := range vars {
		k, v, _ := strings.Cut(kv, "=")
		sh += "export " + k + "=" + shq(v) + "\n"
	}
	sh += "cd " + shq(dir) + "; while [ ! -e " + shq(goFile) + " ]; do sleep 0.05; done\n" +
		script + "\necho \"rc=$?\"; sleep 600"
	args := []string{"new-session", "-d", "-s", p.name, "-x", "100", "-y", "30"}
	s.run(t, append(args, "sh", "-c", sh)...)
	s.run(t, "pipe-pane", "-t", p.name, "-o", "cat >> "+shq(p.raw))
	// pipe-pane starts its command asynchronously: wait for the file.
	p.waitFile()
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *pane) waitFile() {
	p.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(p.raw); err == nil {
			return
		}
	}
	p.t.Fatal("pipe-pane never started")
}

func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// keys sends keys (tmux key names, or literal text with -l).
func (p *pane) keys(keys ...string) {
	p.t.Helper()
	p.s.run(p.t, append([]string{"send-keys", "-t", p.name}, keys...)...)
}

// screen is what the pane shows, with colours and attributes as escapes.
func (p *pane) screen() string {
	p.t.Helper()
	return p.s.run(p.t, "capture-pane", "-p", "-e", "-t", p.name)
}

// rawOut is every byte the pane's programs wrote.
func (p *pane) rawOut() string {
	b, _ := os.ReadFile(p.raw)
	return string(b)
}

// waitRC waits for the script's exit status.
func (p *pane) waitRC(code int, timeout time.Duration) string {
	p.t.Helper()
	// Not at a line's start: capture-pane -e puts the attributes a line
	// begins with first, and a terminal's echo of ^C may come before.
	return p.waitScreen(fmt.Sprintf(`(?m)rc=%d$`, code), timeout)
}

// waitScreen waits until the screen matches re, and returns it.
func (p *pane) waitScreen(re string, timeout time.Duration) string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	var sc string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if sc = p.screen(); rx.MatchString(sc) {
			return sc
		}
	}
	p.t.Fatalf("the screen never matched %q; it shows:\n%s\nraw output:\n%q", re, sc, p.rawOut())
	return ""
}

// The label and colour prompt of bb-plan --ask and bb start, on a terminal.
func TestTmuxAsk(t *testing.T) {
	tm := needTmux(t)
	dir := t.TempDir()
	root, _ := filepath.Abs("..")
	manifest := filepath.Join(dir, "m.json")
	out, err := exec.Command(filepath.Join(binDir, "bb-manifest"), "--file", filepath.Join(root, "examples", "bb.yaml"), "demo").Output()
	if err != nil {
		t.Fatalf("bb-manifest: %v", err)
	}
	if err := os.WriteFile(manifest, out, 0o644); err != nil {
		t.Fatal(err)
	}
	const slug = "demo-tmux"
	def := slices.Index(plan.Palette, plan.ColorFor(slug))
	readPlan := func(name string) (p struct{ Label, Color string }) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, b)
		}
		return p
	}

	t.Run("label replaced, colour picked", func(t *testing.T) {
		p := tm.start(t, dir, "bb-plan --ask --slug "+slug+" m.json > plan1.json")
		// Pre-filled with the agent's name, shown selected (reverse video).
		p.waitScreen(`(?m)^Label: \x1b\[7mdemo\x1b\[.*Enter keeps it, typing replaces it`, 10*time.Second)
		// The first key replaces it; Backspace then edits what is typed.
		p.keys("-l", "bobx")
		p.keys("BSpace")
		p.waitScreen(`(?m)^Label: bob *$`, 5*time.Second)
		p.keys("Enter")
		// Each colour by name, in its colour; the plan's own one marked.
		sc := p.waitScreen(`Colour for bob`, 5*time.Second)
		for i, name := range plan.Palette {
			c := colourEscape(plan.RGB(name))
			if !strings.Contains(sc, fmt.Sprintf("%d %s%s", i+1, c, name)) && !strings.Contains(sc, fmt.Sprintf("%d \x1b[1m%s%s", i+1, c, name)) {
				t.Errorf("colour %d %s is not shown in %q:\n%q", i+1, name, c, sc)
			}
		}
		if !regexp.MustCompile(`> ` + fmt.Sprint(def+1) + ` `).MatchString(sc) {
			t.Errorf("the plan's colour %s is not marked:\n%s", plan.Palette[def], sc)
		}
		p.keys("Down")
		p.waitScreen(`> `+fmt.Sprint((def+1)%len(plan.Palette)+1)+` `, 5*time.Second)
		p.keys("Enter")
		p.waitRC(0, 10*time.Second)
		got := readPlan("plan1.json")
		if want := plan.Palette[(def+1)%len(plan.Palette)]; got.Label != "bob" || got.Color != want {
			t.Errorf("plan label %q colour %q, want bob and %s", got.Label, got.Color, want)
		}
	})

	t.Run("Enter keeps, a number picks", func(t *testing.T) {
		p := tm.start(t, dir, "bb-plan --ask --slug "+slug+" m.json > plan2.json")
		p.waitScreen(`Label: `, 10*time.Second)
		p.keys("Enter")
		p.waitScreen(`Colour for demo`, 5*time.Second)
		p.keys("-l", "7")
		p.keys("Enter")
		p.waitRC(0, 10*time.Second)
		if got := readPlan("plan2.json"); got.Label != "demo" || got.Color != plan.Palette[6] {
			t.Errorf("plan label %q colour %q, want demo and %s", got.Label, got.Color, plan.Palette[6])
		}
	})

	t.Run("Ctrl-C cancels and restores the terminal", func(t *testing.T) {
		p := tm.start(t, dir, "bb-plan --ask m.json > plan3.json; rc=$?; stty -a | tr ' ' '\\n' | grep -x -e icanon -e -icanon -e echo -e -echo | tr '\\n' ' '; echo; (exit $rc)")
		p.waitScreen(`Label: `, 10*time.Second)
		p.keys("-l", "bo")
		p.keys("C-c")
		sc := p.waitRC(130, 10*time.Second)
		if !strings.Contains(sc, "bb-plan: asking for the label: interrupted") {
			t.Errorf("no message of the cancel:\n%s", sc)
		}
		if !regexp.MustCompile(`(?m)^icanon echo *$`).MatchString(sc) {
			t.Errorf("the terminal is not cooked again after Ctrl-C:\n%s", sc)
		}
	})

	t.Run("bb start asks, bb plan does not", func(t *testing.T) {
		// bb next to the real bb-manifest and bb-plan, and a bb-launch
		// that keeps the plan it is given.
		bin := filepath.Join(dir, "bin")
		os.Mkdir(bin, 0o755)
		for _, name := range []string{"bb-manifest", "bb-plan"} {
			if err := os.Symlink(filepath.Join(binDir, name), filepath.Join(bin, name)); err != nil {
				t.Fatal(err)
			}
		}
		stub := "#!/bin/sh\ncat > started.json\n"
		if err := os.WriteFile(filepath.Join(bin, "bb-launch"), []byte(stub), 0o755); err != nil {
			t.Fatal(err)
		}
		wrapper, err := os.ReadFile(filepath.Join(root, "scripts", "bb"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, "bb"), wrapper, 0o755); err != nil {
			t.Fatal(err)
		}
		yaml := shq(filepath.Join(root, "examples", "bb.yaml"))
		p := tm.start(t, dir, "bin/bb start demo --slug "+slug+" --file "+yaml)
		p.waitScreen(`Label: `, 10*time.Second)
		p.keys("-l", "zed")
		p.keys("Enter")
		p.waitScreen(`Colour for zed`, 5*time.Second)
		p.keys("-l", "1")
		p.keys("Enter")
		p.waitRC(0, 10*time.Second)
		if got := readPlan("started.json"); got.Label != "zed" || got.Color != plan.Palette[0] {
			t.Errorf("bb start planned label %q colour %q, want zed and %s", got.Label, got.Color, plan.Palette[0])
		}
		// --label given: nothing asked. bb plan: never asked.
		p = tm.start(t, dir, "bin/bb start demo --label given --file "+yaml+" && bin/bb plan demo --file "+yaml+" > planned.json")
		sc := p.waitRC(0, 10*time.Second)
		if strings.Contains(sc, "Label") || strings.Contains(sc, "Colour") {
			t.Errorf("asked anyway:\n%s", sc)
		}
		if got := readPlan("started.json"); got.Label != "given" {
			t.Errorf("bb start --label given planned label %q", got.Label)
		}
		if got := readPlan("planned.json"); got.Label != "demo" {
			t.Errorf("bb plan planned label %q", got.Label)
		}
	})
}

// colourEscape is how tmux's capture-pane -e writes a colour our 256-colour
// output set: tmux keeps the 256-colour index.
func colourEscape(hex string) string {
	c, _ := terminal.ParseRGB(hex)
	return fmt.Sprintf("\x1b[38;5;%dm", c.Index256())
}

// The terminal tint while attached: set before the agent's first output,
// reset (OSC 104, 110, 111 and the title) when the session ends — the
// agent exits, the agent dies of Ctrl-C, bb-launch attach is sent SIGTERM
// — and nothing tints the terminal after the reset.
func TestTmuxTint(t *testing.T) {
	tm := needTmux(t)
	c := needDocker(t)
	egressOnce.Do(func() { egressErr = buildStaticEgress() })
	if egressErr != nil {
		t.Fatal(egressErr)
	}
	run := fmt.Sprintf("tmux-%d-%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() { sweep(t, c, run) })
	dir := t.TempDir()
	env := []string{"BB_STATE_DIR=" + filepath.Join(dir, "state"), "BB_BASE_IMAGE=" + docker.BaseImage, docker.TestRunEnv + "=" + run}

	const tintRE = `\x1b\[22;0t\x1b\]0;bob \(tester\) — %s\x1b\\\x1b\]4;0;rgb:[0-9a-f/]+;7;[^\x1b]+;8;[^\x1b]+;15;[^\x1b]+\x1b\\\x1b\]10;rgb:[0-9a-f/]+\x1b\\\x1b\]11;rgb:00/16/26\x1b\\`
	const reset = "\x1b]104\x1b\\\x1b]110\x1b\\\x1b]111\x1b\\\x1b]0;\x1b\\\x1b[23;0t"
	// check: the tint came first, the reset after the agent's output, and
	// nothing set a colour or palette after the reset.
	check := func(t *testing.T, raw, slug, first string) {
		t.Helper()
		loc := regexp.MustCompile(fmt.Sprintf(tintRE, slug)).FindStringIndex(raw)
		if loc == nil {
			t.Fatalf("no tint of bottle %s in the terminal's output:\n%q", slug, raw)
		}
		if i := strings.Index(raw, first); i < loc[1] {
			t.Errorf("the agent's %q came before the tint (at %d, tint ends %d)", first, i, loc[1])
		}
		r := strings.LastIndex(raw, reset)
		if r < loc[1] {
			t.Fatalf("no reset after the tint:\n%q", raw[loc[1]:])
		}
		if after := raw[r+len(reset):]; regexp.MustCompile(`\x1b\](4|10|11);`).MatchString(after) {
			t.Errorf("the terminal is tinted again after the reset: %q", after)
		}
	}

	t.Run("the agent exits", func(t *testing.T) {
		slug := "tint-exit-" + run[len(run)-6:]
		planFile := shellPlanFile(t, dir, slug, run, nil)
		p := tm.start(t, dir, "bb-launch "+shq(planFile), env...)
		p.waitScreen(`agent@`, 90*time.Second)
		p.keys("-l", "echo hi-from-agent; exit 3")
		p.keys("Enter")
		p.waitRC(3, 30*time.Second)
		check(t, p.rawOut(), slug, "agent@")
	})

	t.Run("the agent dies of Ctrl-C", func(t *testing.T) {
		slug := "tint-intr-" + run[len(run)-6:]
		planFile := shellPlanFile(t, dir, slug, run, []string{"sh", "-c", "echo agent-ready; sleep 300"})
		p := tm.start(t, dir, "bb-launch "+shq(planFile), env...)
		p.waitScreen(`agent-ready`, 90*time.Second)
		p.keys("C-c")
		p.waitRC(130, 30*time.Second)
		check(t, p.rawOut(), slug, "agent-ready")
	})

	t.Run("bb-launch attach gets SIGTERM", func(t *testing.T) {
		slug := "tint-term-" + run[len(run)-6:]
		planFile := shellPlanFile(t, dir, slug, run, nil)
		launch := exec.Command(filepath.Join(binDir, "bb-launch"), "--detach", planFile)
		launch.Env = append(os.Environ(), env...)
		if out, err := launch.CombinedOutput(); err != nil {
			t.Fatalf("bb-launch --detach: %v\n%s", err, out)
		}
		p := tm.start(t, dir, "echo $$ > attach.pid; exec bb-launch attach "+slug, env...)
		// exec: the pid is bb-launch's; the rc line is then not printed.
		p.waitScreen(`agent@`, 30*time.Second)
		b, err := os.ReadFile(filepath.Join(dir, "attach.pid"))
		if err != nil {
			t.Fatal(err)
		}
		var pid int
		fmt.Sscan(string(b), &pid)
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil {
			t.Fatal("bb-launch attach still runs 30s after SIGTERM")
		}
		check(t, p.rawOut(), slug, "agent@")
	})
}

// shellPlanFile plans the shell agent as slug, labelled bob in blue, its
// resources marked as this test's (bb.test=1 and the run), with command
// instead of the shell's when set; it returns the plan's file.
func shellPlanFile(t *testing.T, dir, slug, run string, command []string) string {
	t.Helper()
	yaml := filepath.Join(dir, "bb.yaml")
	ws := filepath.Join(dir, "ws")
	os.MkdirAll(ws, 0o755)
	if err := os.WriteFile(yaml, []byte("version: 1\nbottles:\n  dev:\n    workspace: "+ws+
		"\n    egress:\n      routes: []\nagents:\n  tester:\n    template: shell\n    bottle: dev\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := exec.Command(filepath.Join(binDir, "bb-manifest"), "--file", yaml, "tester").Output()
	if err != nil {
		t.Fatalf("bb-manifest: %v", err)
	}
	cmd := exec.Command(filepath.Join(binDir, "bb-plan"), "--slug", slug, "--label", "bob", "--color", "blue")
	cmd.Stdin = strings.NewReader(string(m))
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("bb-plan: %v", err)
	}
	var p map[string]any
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	d := p["docker"].(map[string]any)
	for _, k := range []string{"labels", "agent_labels", "sidecar_labels"} {
		l := d[k].(map[string]any)
		l[names.LabelTest], l[labelTestRun] = "1", run
	}
	if command != nil {
		p["agent"].(map[string]any)["command"] = command
	}
	out, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, slug+".json")
	if err := os.WriteFile(file, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// labelTestRun marks what one test binary made, so that it removes only
// that.
const labelTestRun = "bb.test.run"

// needDocker is the engine with the offline base image; without them the
// test is skipped, unless BB_REQUIRE_DOCKER=1.
func needDocker(t *testing.T) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := docker.Connect(ctx)
	if err == nil {
		if ok, ierr := docker.ImageExists(ctx, c, docker.BaseImage); ierr != nil || !ok {
			c.Close()
			err = fmt.Errorf("the base image %s is absent (%v): run scripts/base-image", docker.BaseImage, ierr)
		}
	}
	if err != nil {
		if os.Getenv("BB_REQUIRE_DOCKER") == "1" {
			t.Fatalf("BB_REQUIRE_DOCKER=1: %v", err)
		}
		t.Skipf("no docker engine with %s (BB_REQUIRE_DOCKER=1 fails instead): %v", docker.BaseImage, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sweep removes what the run made: containers, networks, volumes, images.
func sweep(t *testing.T, c *client.Client, run string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := docker.RemoveLabelled(ctx, c, labelTestRun, run); err != nil {
		t.Errorf("removing what the test made: %v", err)
	}
}

var (
	egressOnce sync.Once
	egressErr  error
)

// buildStaticEgress puts a static bb-egress beside bb-launch, which the
// sidecar image (FROM scratch) needs.
func buildStaticEgress() error {
	cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, "bb-egress-linux-"+runtime.GOARCH), "./bb-egress")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building a static bb-egress: %v\n%s", err, out)
	}
	return nil
}
