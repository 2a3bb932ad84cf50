// Package smolvmtest runs bb's smolvm backend against a fake smolvm in
// tests, where smolvm cannot be installed: it builds the fake (package
// internal/fakesmolvm: stateful over the documented subset, recording
// every argument vector) and reads back what it recorded and holds.
package smolvmtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/bb-bottles/bb/lib/backend/smolvm/internal/syntax"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
	buildOut  []byte
)

// Binary builds the fake once per test binary and returns its path, a file
// named smolvm.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "fakesmolvm-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, "smolvm"),
			"github.com/bb-bottles/bb/lib/backend/smolvm/internal/fakesmolvm")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("building the fake smolvm: %v\n%s", buildErr, buildOut)
	}
	return filepath.Join(buildDir, "smolvm")
}

// Fake is one fake smolvm installation: the binary and its state folder.
type Fake struct {
	Bin string
	Dir string
}

// New returns a fake with a state folder of its own, removed when t ends.
func New(t testing.TB) *Fake {
	return &Fake{Bin: Binary(t), Dir: t.TempDir()}
}

// Env is what a process needs to use this fake: its state folder.
func (f *Fake) Env() []string { return []string{"SMOLVM_FAKE_DIR=" + f.Dir} }

// Call is one invocation of the fake: its arguments, and the names of the
// variables it was run with.
type Call struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env"`
}

// Line is the call as one string: "machine create --name ...".
func (c Call) Line() string { return strings.Join(c.Argv, " ") }

// Calls returns every invocation so far, in order.
func (f *Fake) Calls(t testing.TB) []Call {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.Dir, "argv.jsonl"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var calls []Call
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var c Call
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("argv.jsonl: %v", err)
		}
		calls = append(calls, c)
	}
	return calls
}

// Log is the raw argv log, to search for what must never be in it.
func (f *Fake) Log(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.Dir, "argv.jsonl"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return b
}

// Machine is what the fake holds of one machine.
type Machine struct {
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels"`
	Image       string            `json:"image"`
	From        string            `json:"from"`
	Cpus        int               `json:"cpus"`
	Mem         int               `json:"mem"`
	Volumes     []string          `json:"volumes"`
	Net         bool              `json:"net"`
	Network     string            `json:"network"`
	AllowHosts  []string          `json:"allow_hosts"`
	DNS         string            `json:"dns"`
	Env         []string          `json:"env"`
	Workdir     string            `json:"workdir"`
	SecretEnv   map[string]string `json:"secret_env"`
	Cmd         []string          `json:"cmd"`
	State       string            `json:"state"`
	Address     string            `json:"address"`
	Files       map[string]*File  `json:"files"`
	Procs       []Proc            `json:"procs"`
	WorkloadEnv []string          `json:"workload_env"`
	Holder      *Holder           `json:"holder"`
}

// File is a file written into a machine.
type File struct {
	Data []byte `json:"data"`
	// Blob names a big file's data under blobs/: see Fake.Data.
	Blob string `json:"blob"`
	Mode uint32 `json:"mode"`
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
	Dir  bool   `json:"dir"`
}

// Proc is a detached process of a machine.
type Proc struct {
	PID  int      `json:"pid"`
	Argv []string `json:"argv"`
	UID  int      `json:"uid"`
	Env  []string `json:"env"`
}

// Holder is bb's guest terminal holder as the fake models it.
type Holder struct {
	Socket   string   `json:"socket"`
	Command  []string `json:"command"`
	Started  bool     `json:"started"`
	Running  bool     `json:"running"`
	ExitCode *int     `json:"exit_code"`
	UID      int      `json:"uid"`
}

// Machines returns the machines the fake holds, by name.
func (f *Fake) Machines(t testing.TB) map[string]*Machine {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.Dir, "state.json"))
	if os.IsNotExist(err) {
		return map[string]*Machine{}
	}
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Machines map[string]*Machine `json:"machines"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.Machines == nil {
		st.Machines = map[string]*Machine{}
	}
	return st.Machines
}

// State is the raw state file, to search for what must never be in it.
func (f *Fake) State(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.Dir, "state.json"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return b
}

// CheckSyntax checks every call so far against smolvm's documented syntax
// (internal/syntax), and returns the table's entry for every flag used, so
// a test can print or check their citations.
func (f *Fake) CheckSyntax(t testing.TB) []syntax.Flag {
	t.Helper()
	var used []syntax.Flag
	seen := map[string]bool{}
	for _, c := range f.Calls(t) {
		in, err := syntax.Parse(c.Argv)
		if err != nil {
			t.Errorf("smolvm %s: %v", c.Line(), err)
			continue
		}
		for _, fl := range in.Cmd.Flags {
			if in.Has(fl.Long) && !seen[in.Cmd.Name()+fl.Long] {
				seen[in.Cmd.Name()+fl.Long] = true
				used = append(used, fl)
			}
		}
	}
	return used
}

// Run runs the fake itself, as a person would, with env over its own.
func (f *Fake) Run(t testing.TB, env []string, args ...string) error {
	t.Helper()
	cmd := exec.Command(f.Bin, args...)
	cmd.Env = append(append(os.Environ(), f.Env()...), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("smolvm %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Data is f's content.
func (f *Fake) Data(t testing.TB, file *File) []byte {
	t.Helper()
	if file.Blob == "" {
		return file.Data
	}
	b, err := os.ReadFile(filepath.Join(f.Dir, "blobs", file.Blob))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
