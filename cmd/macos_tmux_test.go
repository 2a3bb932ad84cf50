package cmd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bb start on macos-container, on a real terminal (tmux), against the fake
// container CLI: the person types to the agent, detaches with Ctrl-P
// Ctrl-Q, joins again with bb-launch attach, and the agent's exit status is
// bb-launch's, the bottle then stopped. The fake runs the agent's command
// on this machine when a session joins (its model of the guest's terminal,
// which lib/guest tests for real).
func TestTmuxMacOSContainer(t *testing.T) {
	tm := needTmux(t)
	dir, err := os.MkdirTemp("", "bbmc") // short: sockets live in the state folder
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ws := filepath.Join(dir, "ws")
	os.MkdirAll(ws, 0o755)
	if err := os.WriteFile(filepath.Join(dir, "bb.yaml"), []byte("version: 1\nbottles:\n  dev:\n    workspace: "+ws+
		"\n    egress:\n      routes: []\nagents:\n  tester:\n    template: shell\n    bottle: dev\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"PATH=" + filepath.Join(binDir, "fakecontainer") + string(os.PathListSeparator) + binDir + string(os.PathListSeparator) + os.Getenv("PATH"),
		"FAKE_CONTAINER_DIR=" + filepath.Join(dir, "fake"), "BB_STATE_DIR=" + filepath.Join(dir, "st"),
		"DOCKER_HOST=unix:///nonexistent/docker.sock", "HOME=" + dir,
	}
	t.Cleanup(func() { killFakeListeners(filepath.Join(dir, "fake")) })

	p := tm.start(t, dir, "bb start tester --file bb.yaml --backend macos-container --slug mc-tmux --label bob --color blue", env...)
	p.waitScreen(`bot-bottle-mc-tmux[#$]`, 60*time.Second)
	p.keys("-l", "echo hello-$((6*7))")
	p.keys("Enter")
	p.waitScreen(`hello-42`, 10*time.Second)
	p.keys("C-p", "C-q")
	sc := p.waitRC(0, 20*time.Second)
	if !strings.Contains(sc, "detached from bottle mc-tmux") {
		t.Errorf("no word of the detach:\n%s", sc)
	}

	p2 := tm.start(t, dir, "bb-launch attach mc-tmux", env...)
	p2.waitScreen(`bot-bottle-mc-tmux[#$]`, 30*time.Second)
	p2.keys("-l", "exit 3")
	p2.keys("Enter")
	p2.waitRC(3, 30*time.Second)
	// The agent exited: the bottle was stopped (it is not preserved).
	p3 := tm.start(t, dir, "bb-launch ls --format json", env...)
	p3.waitRC(0, 20*time.Second)
	if sc := p3.screen(); !strings.Contains(sc, `"status": "stopped"`) {
		t.Errorf("after the agent's exit, ls shows:\n%s", sc)
	}
}

// killFakeListeners ends what the fake left running (its published
// sockets' listeners).
func killFakeListeners(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return
	}
	for _, f := range strings.Split(string(b), "\"listeners\": [") {
		end := strings.Index(f, "]")
		if end < 0 {
			continue
		}
		for _, n := range strings.FieldsFunc(f[:end], func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
			var pid int
			for _, c := range n {
				if c < '0' || c > '9' {
					pid = 0
					break
				}
				pid = pid*10 + int(c-'0')
			}
			if pid > 0 {
				if proc, err := os.FindProcess(pid); err == nil {
					proc.Kill()
				}
			}
		}
	}
}
