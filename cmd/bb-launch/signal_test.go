package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bb-bottles/bb/lib/backend/docker"
	"github.com/bb-bottles/bb/lib/names"
)

// TestMain lets a test run this binary as bb-launch itself (main, with its
// signals), to send it a signal.
func TestMain(m *testing.M) {
	if os.Getenv("BB_LAUNCH_TEST_MAIN") == "1" {
		os.Args = append([]string{"bb-launch"}, os.Args[1:]...)
		main()
	}
	os.Exit(runTests(m))
}

// testRun labels what this test binary makes, to sweep exactly that.
var testRun = fmt.Sprintf("bb-launch-%d-%d", os.Getpid(), time.Now().UnixNano())

func runTests(m *testing.M) int {
	docker.AddLabels(map[string]string{names.LabelTest: "1", names.LabelTestRun: testRun})
	code := m.Run()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if c, err := docker.Connect(ctx); err == nil {
		if err := docker.RemoveLabelled(ctx, c, names.LabelTestRun, testRun); err != nil {
			fmt.Fprintln(os.Stderr, "removing what the tests made:", err)
			if code == 0 {
				code = 1
			}
		}
		c.Close()
	}
	return code
}

// A SIGHUP (the terminal closed) in the middle of a launch removes what the
// launch made, as Ctrl-C does, and says which step it cut.
func TestSIGHUPMidLaunch(t *testing.T) {
	c := needEngine(t)
	stateDir := t.TempDir()
	slug := "sighup-" + strings.ToLower(time.Now().Format("150405")) + "x"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		docker.Stop(ctx, c, slug)
	})
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "--detach", "--build-arg", "INSTALL_CLI=0")
	cmd.Env = append(os.Environ(), "BB_LAUNCH_TEST_MAIN=1", docker.TestRunEnv+"="+testRun, "BB_STATE_DIR="+stateDir, "BB_BASE_IMAGE="+docker.BaseImage,
		"GH_TEST_TOKEN=tok-not-in-the-agent", "BB_LAUNCH_TRACE=1")
	cmd.Stdin = strings.NewReader(shellPlanJSON(t, slug, "GH_TEST_TOKEN"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var said strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		said.WriteString(sc.Text() + "\n")
		// The networks exist and the sidecar is on its way.
		if strings.HasPrefix(sc.Text(), "bb-launch: creating the networks") {
			cmd.Process.Signal(syscall.SIGHUP)
			break
		}
	}
	for sc.Scan() {
		said.WriteString(sc.Text() + "\n")
	}
	err = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 130 || !strings.Contains(said.String(), ": interrupted\n") {
		t.Errorf("exit %d (%v); want 130 and the step interrupted:\n%s", code, err, said.String())
	}
	if strings.Contains(said.String(), "bb-launch: interrupted\n") {
		t.Errorf("the step is not named:\n%s", said.String())
	}
	left, _, err := docker.Leftovers(t.Context(), c, slug)
	if err != nil || left {
		t.Errorf("SIGHUP left containers or networks of %s (%v)", slug, err)
	}
	if _, err := os.Stat(filepath.Join(stateDir, slug)); !os.IsNotExist(err) {
		t.Errorf("SIGHUP left the state folder: %v", err)
	}
}
