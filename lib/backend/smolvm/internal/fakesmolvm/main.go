// Command fakesmolvm stands in for smolvm (smol-machines/smolvm) where it
// cannot run: the tests build it and put it first on bb's way to smolvm.
// It accepts exactly the command lines of internal/syntax (smolvm v1.9.3's
// documented syntax for the subset bb runs) and keeps state between calls in
// $SMOLVM_FAKE_DIR: machines and their states, labels, mounts, env, secret
// references, the files written into them, named-network leases
// (100.96.k.2, the lowest free k, as crates/smolvm-network/src/fabric.rs
// leases them), detached processes, and packs. It prints `machine ls --json`
// in the shape of src/cli/vm_common.rs machine_status_json and fails as smolvm
// does: "Error: ..." on stderr and exit 1 (src/main.rs), exit 2 for bad
// usage (clap).
//
// A machine's guest is a model, not a VM: `machine exec` runs a few commands
// the backend uses (cat, mkdir -p, id, sh -c "exit N", env, and bb's guest
// helper: bb-egress guest hold|join|status|dial), reading the files of the
// image (a `docker save` archive or a root filesystem folder) under those
// written with `machine cp`. `guest dial` follows smolvm's network rules: no
// network without --net/--network/--allow-*; a fabric address reaches a
// running member of the same named network; anything else only an address
// the egress allow-list holds.
//
// Every invocation is appended to $SMOLVM_FAKE_DIR/argv.jsonl with the names
// (never the values) of the variables it was run with. Faults for tests: SMOLVM_FAKE_FAIL=<prefix of the command line> (all of it
// when it ends in "$") fails it; SMOLVM_FAKE_HANG=<prefix> blocks until killed; SMOLVM_FAKE_EXEC_137=1
// answers the first exec after each start with 137 (killed) and no output;
// SMOLVM_FAKE_VERSION sets --version's answer (1.9.3).
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bb-bottles/bb/lib/backend/smolvm/internal/syntax"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

type fail struct {
	code int
	msg  string
}

func (f *fail) Error() string { return f.msg }

func failf(format string, a ...any) error { return &fail{code: 1, msg: fmt.Sprintf(format, a...)} }

// exitCode is a guest command's status, passed through as smolvm does.
type exitCode int

func (e exitCode) Error() string { return "exit " + strconv.Itoa(int(e)) }

// stateDir is $SMOLVM_FAKE_DIR.
var stateDir string

// data is f's content, read from its blob for a big one.
func (f *file) data() []byte {
	if f.Blob == "" {
		return f.Data
	}
	b, _ := os.ReadFile(filepath.Join(stateDir, "blobs", f.Blob))
	return b
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	dir := os.Getenv("SMOLVM_FAKE_DIR")
	stateDir = dir
	if dir == "" {
		fmt.Fprintln(stderr, "Error: fakesmolvm: SMOLVM_FAKE_DIR is not set")
		return 1
	}
	logArgv(dir, args)
	line := strings.Join(args, " ")
	if matches(line, os.Getenv("SMOLVM_FAKE_HANG")) {
		time.Sleep(time.Hour)
	}
	if matches(line, os.Getenv("SMOLVM_FAKE_FAIL")) {
		fmt.Fprintf(stderr, "Error: injected failure of %q\n", line)
		return 1
	}
	in, err := syntax.Parse(args)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	err = dispatch(dir, in, stdin, stdout, stderr)
	var code exitCode
	var f *fail
	switch {
	case err == nil:
		return 0
	case errors.As(err, &code):
		return int(code)
	case errors.As(err, &f):
		fmt.Fprintln(stderr, "Error:", f.msg)
		return f.code
	default:
		fmt.Fprintln(stderr, "Error:", err)
		return 1
	}
}

// matches says whether line starts with prefix; a prefix ending in "$"
// must be all of it.
func matches(line, prefix string) bool {
	if exact, ok := strings.CutSuffix(prefix, "$"); ok {
		return line == exact
	}
	return prefix != "" && strings.HasPrefix(line, prefix)
}

func logArgv(dir string, args []string) {
	var names []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		names = append(names, k)
	}
	sort.Strings(names)
	b, _ := json.Marshal(struct {
		Argv []string `json:"argv"`
		Env  []string `json:"env"`
	}{args, names})
	f, err := os.OpenFile(filepath.Join(dir, "argv.jsonl"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	unix.Flock(int(f.Fd()), unix.LOCK_EX) //nolint:errcheck // best effort: lines are short appends
	f.Write(append(b, '\n'))              //nolint:errcheck
}

// state is everything the fake keeps, in $SMOLVM_FAKE_DIR/state.json.
type state struct {
	Machines map[string]*machine `json:"machines"`
	NextPID  int                 `json:"next_pid"`
}

type machine struct {
	Name       string            `json:"name"`
	Labels     map[string]string `json:"labels"`
	Image      string            `json:"image,omitempty"` // local-archive:<copy> or local-dir:<abs>
	From       string            `json:"from,omitempty"`
	Cpus       int               `json:"cpus"`
	Mem        int               `json:"mem"`
	Volumes    []string          `json:"volumes,omitempty"`
	Net        bool              `json:"net"`
	Network    string            `json:"network,omitempty"`
	AllowHosts []string          `json:"allow_hosts,omitempty"`
	DNS        string            `json:"dns,omitempty"`
	Env        []string          `json:"env,omitempty"`
	Workdir    string            `json:"workdir,omitempty"`
	SecretEnv  map[string]string `json:"secret_env,omitempty"` // guest var -> host var
	Cmd        []string          `json:"cmd,omitempty"`
	State      string            `json:"state"`
	PID        int               `json:"pid,omitempty"`
	Address    string            `json:"address,omitempty"`
	CreatedAt  int64             `json:"created_at"`
	// Files are the paths written (nil: removed) over the image's.
	Files map[string]*file `json:"files,omitempty"`
	// Base indexes an archive image: its files under /etc and its
	// folders near the root (all the model reads), and its User.
	Base      map[string]*file `json:"base,omitempty"`
	ImageUser string           `json:"image_user,omitempty"`
	Procs     []proc           `json:"procs,omitempty"`
	// WorkloadEnv is the environment the workload was started with: what
	// the VM holds in memory (secret values included, as smolvm hands
	// them to the guest).
	WorkloadEnv []string `json:"workload_env,omitempty"`
	Holder      *holder  `json:"holder,omitempty"`
	ExecsSince  int      `json:"execs_since_start"`
}

type file struct {
	Data []byte `json:"data,omitempty"`
	// Blob names the file holding a big file's data, under blobs/ in the
	// state folder: the state stays small enough to read at every call.
	Blob string `json:"blob,omitempty"`
	Mode uint32 `json:"mode"`
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
	Dir  bool   `json:"dir,omitempty"`
}

type proc struct {
	PID  int      `json:"pid"`
	Argv []string `json:"argv"`
	UID  int      `json:"uid"`
	Env  []string `json:"env"`
}

// holder is bb's guest terminal holder as the model runs it.
type holder struct {
	Socket   string   `json:"socket"`
	Command  []string `json:"command"`
	Started  bool     `json:"started"`
	Running  bool     `json:"running"`
	ExitCode *int     `json:"exit_code,omitempty"`
	UID      int      `json:"uid"`
}

// pack is a .smolmachine as the fake writes it.
type pack struct {
	Format    string           `json:"format"`
	FromVM    string           `json:"from_vm"`
	Image     string           `json:"image"`
	Base      map[string]*file `json:"base"`
	ImageUser string           `json:"image_user"`
	Files     map[string]*file `json:"files"`
	Env       []string         `json:"env"`
	Cmd       []string         `json:"cmd"`
	Workdir   string           `json:"workdir"`
	Net       bool             `json:"network"`
}

const packFormat = "fakesmolvm-smolmachine-1"

// withState runs fn on the state under an exclusive lock and saves it.
func withState(dir string, fn func(*state) error) error {
	lock, err := os.OpenFile(filepath.Join(dir, "state.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	st := &state{Machines: map[string]*machine{}, NextPID: 100}
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err == nil {
		if err := json.Unmarshal(b, st); err != nil {
			return fmt.Errorf("fakesmolvm: reading its state: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, m := range st.Machines {
		if m.Files == nil {
			m.Files = map[string]*file{}
		}
		if m.Labels == nil {
			m.Labels = map[string]string{}
		}
		if m.SecretEnv == nil {
			m.SecretEnv = map[string]string{}
		}
	}
	ferr := fn(st)
	out, err := json.MarshalIndent(st, "", " ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "state.json.tmp")
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "state.json")); err != nil {
		return err
	}
	return ferr
}

func dispatch(dir string, in *syntax.Invocation, stdin io.Reader, stdout, stderr io.Writer) error {
	switch in.Cmd.Name() {
	case "--version":
		v := os.Getenv("SMOLVM_FAKE_VERSION")
		if v == "" {
			v = strings.TrimPrefix(syntax.Release, "v")
		}
		fmt.Fprintf(stdout, "smolvm %s\n", v)
		return nil
	case "machine create":
		return withState(dir, func(st *state) error { return create(dir, st, in, stdout) })
	case "machine start":
		return withState(dir, func(st *state) error { return start(st, name(in), stdout) })
	case "machine stop":
		return withState(dir, func(st *state) error {
			m, err := get(st, name(in))
			if err != nil {
				return err
			}
			if m.State != "running" {
				return failf("machine '%s' is not running", m.Name)
			}
			stop(m)
			fmt.Fprintf(stdout, "Machine '%s' stopped\n", m.Name)
			return nil
		})
	case "machine delete":
		return withState(dir, func(st *state) error {
			m, err := get(st, in.Value("--name"))
			if err != nil {
				return err
			}
			if !in.Bools["--force"] {
				// Without a terminal the real prompt reads EOF: no.
				return failf("deletion of '%s' not confirmed (use --force)", m.Name)
			}
			stop(m)
			delete(st.Machines, m.Name)
			fmt.Fprintf(stdout, "Deleted machine '%s'\n", m.Name)
			return nil
		})
	case "machine ls":
		var list []map[string]any
		err := withState(dir, func(st *state) error {
			names := slices.Sorted(maps.Keys(st.Machines))
			for _, n := range names {
				list = append(list, statusJSON(st.Machines[n]))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if !in.Bools["--json"] {
			for _, m := range list {
				fmt.Fprintf(stdout, "%-20s %-12s\n", m["name"], m["state"])
			}
			return nil
		}
		if len(list) == 0 {
			fmt.Fprintln(stdout, "[]")
			return nil
		}
		b, _ := json.MarshalIndent(list, "", "  ")
		fmt.Fprintln(stdout, string(b))
		return nil
	case "machine exec":
		return execCmd(dir, in, stdin, stdout, stderr)
	case "machine cp":
		return withState(dir, func(st *state) error { return cp(st, in) })
	case "pack create":
		return withState(dir, func(st *state) error { return packCreate(st, in, stdout) })
	}
	return failf("fakesmolvm: %s is in the table but not modelled", in.Cmd.Name())
}

func name(in *syntax.Invocation) string {
	if n := in.Value("--name"); n != "" {
		return n
	}
	return "default"
}

func get(st *state, name string) (*machine, error) {
	m := st.Machines[name]
	if m == nil {
		return nil, failf("machine '%s' not found", name)
	}
	return m, nil
}

// validName is src/data/mod.rs validate_vm_name.
func validName(n string) error {
	switch {
	case n == "":
		return failf("machine name cannot be empty")
	case len(n) > 128:
		return failf("machine name too long: %d characters (max 128)", len(n))
	case !isAlnum(n[0]):
		return failf("machine name must start with a letter or digit (got: %q)", n)
	case strings.HasSuffix(n, "-"):
		return failf("machine name cannot end with a hyphen (got: %q)", n)
	case strings.Contains(n, "--"):
		return failf("machine name cannot contain consecutive hyphens")
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; !isAlnum(c) && c != '-' && c != '_' {
			return failf("machine name contains invalid character: '%c'", c)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func create(dir string, st *state, in *syntax.Invocation, stdout io.Writer) error {
	n := in.Value("--name")
	if n == "" {
		n = fmt.Sprintf("vm-%d", time.Now().UnixNano()%100000)
	}
	if err := validName(n); err != nil {
		return err
	}
	if st.Machines[n] != nil {
		return failf("machine '%s' already exists", n)
	}
	m := &machine{Name: n, Labels: map[string]string{}, Cpus: 4, Mem: 8192, State: "created",
		CreatedAt: time.Now().Unix(), Files: map[string]*file{}, SecretEnv: map[string]string{}}
	for _, l := range in.Values["--label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return failf("--label: expected KEY=VALUE, got '%s'", l)
		}
		m.Labels[k] = v
	}
	var err error
	if in.Has("--cpus") {
		if m.Cpus, err = strconv.Atoi(in.Value("--cpus")); err != nil || m.Cpus < 1 || m.Cpus > 255 {
			return &fail{code: 2, msg: fmt.Sprintf("error: invalid value '%s' for '--cpus <N>'", in.Value("--cpus"))}
		}
	}
	if in.Has("--mem") {
		if m.Mem, err = strconv.Atoi(in.Value("--mem")); err != nil || m.Mem < 1 {
			return &fail{code: 2, msg: fmt.Sprintf("error: invalid value '%s' for '--mem <MiB>'", in.Value("--mem"))}
		}
	}
	targets := map[string]bool{}
	for _, v := range in.Values["--volume"] {
		rest, mode, _ := cutLast(v, ":")
		if mode != "ro" && mode != "rw" {
			rest = v
		}
		src, dst, ok := cutLast(rest, ":")
		if !ok || src == "" || dst == "" {
			return failf("invalid format '%s' (expected host:guest[:ro|:rw])", v)
		}
		if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
			return failf("source path on host must be a directory (virtiofs limitation): %s", src)
		}
		if !strings.HasPrefix(dst, "/") {
			return failf("target path on guest should be an absolute directory: %s", dst)
		}
		if targets[dst] {
			return failf("duplicate mount target: %s is specified more than once", dst)
		}
		targets[dst] = true
		m.Volumes = append(m.Volumes, v)
	}
	for _, h := range in.Values["--allow-host"] {
		if net.ParseIP(h) == nil {
			// Names are resolved on the host at create; the fake has no DNS.
			return failf("--allow-host: failed to resolve '%s'", h)
		}
		m.AllowHosts = append(m.AllowHosts, h)
	}
	if d := in.Value("--dns"); d != "" {
		if ip := net.ParseIP(d); ip == nil || ip.To4() == nil {
			return &fail{code: 2, msg: fmt.Sprintf("error: invalid value '%s' for '--dns <IP>'", d)}
		}
		m.DNS = d
	}
	m.Net = in.Bools["--net"] || in.Has("--network") || len(m.AllowHosts) > 0 || m.DNS != ""
	m.Network = in.Value("--network")
	m.Env = in.Values["--env"]
	for _, e := range m.Env {
		if !strings.Contains(e, "=") {
			return failf("--env: expected KEY=VALUE, got '%s'", e)
		}
	}
	m.Workdir = in.Value("--workdir")
	for _, s := range in.Values["--secret-env"] {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" || v == "" {
			return failf("--secret-env: expected KEY=VALUE, got '%s'", s)
		}
		if _, dup := m.SecretEnv[k]; dup {
			return failf("--secret-env: secret '%s' specified more than once", k)
		}
		m.SecretEnv[k] = v
	}
	m.Cmd = in.Trailing
	switch {
	case in.Has("--image"):
		img := in.Value("--image")
		fi, err := os.Stat(img)
		if err != nil {
			return failf("--image: cannot read archive %s: no such file or directory", img)
		}
		if fi.IsDir() {
			abs, _ := filepath.Abs(img)
			m.Image = "local-dir:" + abs
		} else {
			// smolvm stages the archive into its cache: the caller may
			// remove its own copy.
			cp := filepath.Join(dir, "images", fmt.Sprintf("%s-%d.tar", n, time.Now().UnixNano()))
			if err := os.MkdirAll(filepath.Dir(cp), 0o700); err != nil {
				return err
			}
			if err := os.Link(img, cp); err != nil {
				if err := copyFile(img, cp); err != nil {
					return err
				}
			}
			c, err := imageConfig(cp)
			if err != nil {
				return failf("--image: %s is not a docker save archive: %v", img, err)
			}
			if m.Base, err = indexArchive(cp); err != nil {
				return failf("--image: reading %s: %v", img, err)
			}
			m.Image, m.ImageUser = "local-archive:"+cp, c.Config.User
		}
	case in.Has("--from"):
		from := in.Value("--from")
		b, err := os.ReadFile(from)
		if err != nil {
			return failf("create from .smolmachine: file not found: %s", from)
		}
		var p pack
		if json.Unmarshal(b, &p) != nil || p.Format != packFormat {
			return failf("read .smolmachine: %s is not a .smolmachine", from)
		}
		m.From = from
		m.Image, m.Base, m.ImageUser = p.Image, p.Base, p.ImageUser
		m.Files = p.Files
		if m.Files == nil {
			m.Files = map[string]*file{}
		}
		// CLI flags override the manifest; env extends it; the workdir is
		// the manifest's (src/cli/machine.rs run_from_smolmachine).
		m.Env = append(slices.Clone(p.Env), m.Env...)
		m.Workdir = p.Workdir
		m.Net = m.Net || p.Net
		if len(m.Cmd) == 0 {
			m.Cmd = p.Cmd
		}
	}
	st.Machines[n] = m
	fmt.Fprintf(stdout, "Created machine: %s\n", n)
	return nil
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

func start(st *state, n string, stdout io.Writer) error {
	m, err := get(st, n)
	if err != nil {
		return err
	}
	if m.State == "running" {
		fmt.Fprintf(stdout, "Machine '%s' already running\n", n)
		return nil
	}
	// Secret references resolve against this process's environment, and a
	// missing one fails the start (src/secrets.rs).
	env := slices.Clone(m.Env)
	for _, g := range slices.Sorted(maps.Keys(m.SecretEnv)) {
		h := m.SecretEnv[g]
		v, ok := os.LookupEnv(h)
		if !ok {
			return failf("secret '%s': host environment variable '%s' is not set", g, h)
		}
		env = append(env, g+"="+v)
	}
	if m.Network != "" {
		used := map[int]bool{}
		for _, o := range st.Machines {
			if o.State == "running" && o.Network == m.Network {
				k, _ := strconv.Atoi(strings.Split(o.Address, ".")[2])
				used[k] = true
			}
		}
		k := 1
		for used[k] {
			k++
		}
		m.Address = fmt.Sprintf("100.96.%d.2", k)
	}
	st.NextPID++
	m.PID = st.NextPID
	m.State = "running"
	m.WorkloadEnv = env
	m.ExecsSince = 0
	fmt.Fprintf(stdout, "Machine '%s' running (PID: %d)\n", n, m.PID)
	return nil
}

// stop ends the machine: its processes die and its memory-backed folders
// empty (AGENTS.md "Memory-backed paths": /tmp, /run, /dev/shm).
func stop(m *machine) {
	m.State = "stopped"
	m.PID = 0
	m.Address = ""
	m.Procs = nil
	m.WorkloadEnv = nil
	if m.Holder != nil && m.Holder.Running {
		m.Holder = nil
	}
	for p := range m.Files {
		for _, t := range []string{"/tmp/", "/run/", "/dev/shm/"} {
			if strings.HasPrefix(p, t) {
				delete(m.Files, p)
			}
		}
	}
}

// statusJSON is one element of `machine ls --json` (src/cli/vm_common.rs
// machine_status_json at v1.9.3).
func statusJSON(m *machine) map[string]any {
	var pid any
	if m.PID != 0 {
		pid = m.PID
	}
	var image any
	if m.Image != "" && m.From == "" {
		// A machine made from a VM-mode pack has no image
		// (src/cli/machine.rs run_from_smolmachine: image None).
		image = m.Image
	}
	labels := m.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	return map[string]any{
		"name": m.Name, "state": m.State, "cpus": m.Cpus, "memory_mib": m.Mem, "pid": pid,
		"mounts": len(m.Volumes), "ports": 0, "created_at": m.CreatedAt, "storage_gb": nil, "overlay_gb": nil,
		"image": image, "entrypoint": []string{}, "cmd": nonNil(m.Cmd), "ephemeral": false, "gpu": false,
		"gpu_vram_mib": nil, "cuda": false, "forkable": false, "cuda_fork_pool_size": nil,
		"cuda_vram_limit_mib": nil, "forkpoint_held": false, "labels": labels, "restart_policy": "never",
		"restart_max_retries": 0, "restart_count": 0, "health_cmd": nil, "health_interval_secs": nil,
		"health_timeout_secs": nil, "health_retries": nil, "health_startup_grace_secs": nil, "network": m.Net,
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func cp(st *state, in *syntax.Invocation) error {
	src, dst := in.Positionals[0], in.Positionals[1]
	var mname, guest, local string
	upload := false
	if n, p, ok := strings.Cut(src, ":"); ok {
		mname, guest, local = n, p, dst
	} else if n, p, ok := strings.Cut(dst, ":"); ok {
		mname, guest, local, upload = n, p, src, true
	} else {
		return failf("one of SRC or DST must use machine:path syntax (e.g., myvm:/workspace/file)")
	}
	if !upload && (in.Has("--mode") || in.Has("--uid") || in.Has("--gid")) {
		return failf("--mode/--uid/--gid apply to uploads only (host -> machine)")
	}
	m, err := get(st, mname)
	if err != nil {
		return err
	}
	if m.State != "running" {
		// ensure_running_and_connect starts it, as smolvm does.
		if err := start(st, mname, io.Discard); err != nil {
			return err
		}
	}
	if !strings.HasPrefix(guest, "/") {
		return failf("invalid guest path '%s': must be absolute", guest)
	}
	guest = path.Clean(guest)
	if !upload {
		f, ok := readGuest(m, guest)
		if !ok || f.Dir {
			return failf("failed to read %s: No such file or directory (os error 2)", guest)
		}
		return os.WriteFile(local, f.data(), 0o644)
	}
	data, err := os.ReadFile(local)
	if err != nil {
		return failf("read local file: %s: %v", local, err)
	}
	f := &file{Data: data, Mode: 0o644}
	if len(data) > 64<<10 {
		sum := sha256.Sum256(data)
		f.Blob, f.Data = hex.EncodeToString(sum[:]), nil
		if err := os.MkdirAll(filepath.Join(stateDir, "blobs"), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(stateDir, "blobs", f.Blob), data, 0o600); err != nil {
			return err
		}
	}
	if v := in.Value("--mode"); v != "" {
		mode, err := strconv.ParseUint(strings.TrimPrefix(v, "0o"), 8, 32)
		if err != nil || mode > 0o7777 {
			return failf("invalid octal mode '%s' (expected e.g. 644)", v)
		}
		f.Mode = uint32(mode)
	}
	if v := in.Value("--uid"); v != "" {
		if f.UID, err = strconv.Atoi(v); err != nil {
			return &fail{code: 2, msg: fmt.Sprintf("error: invalid value '%s' for '--uid <UID>'", v)}
		}
	}
	if v := in.Value("--gid"); v != "" {
		if f.GID, err = strconv.Atoi(v); err != nil {
			return &fail{code: 2, msg: fmt.Sprintf("error: invalid value '%s' for '--gid <GID>'", v)}
		}
	}
	// Parents are made as root (smolvm-agent create_dir_all).
	for d := path.Dir(guest); d != "/"; d = path.Dir(d) {
		if _, ok := readGuest(m, d); !ok {
			m.Files[d] = &file{Dir: true, Mode: 0o755}
		}
	}
	m.Files[guest] = f
	return nil
}

// readGuest reads a path of m: written files first, then the image's.
func readGuest(m *machine, p string) (*file, bool) {
	if p == "/" {
		return &file{Dir: true, Mode: 0o755}, true
	}
	if f, ok := m.Files[p]; ok {
		return f, f != nil
	}
	for _, mount := range m.Volumes {
		rest, mode, _ := cutLast(mount, ":")
		if mode != "ro" && mode != "rw" {
			rest = mount
		}
		src, dst, _ := cutLast(rest, ":")
		if rel, ok := strings.CutPrefix(p, dst+"/"); ok || p == dst {
			hp := filepath.Join(src, filepath.FromSlash(rel))
			fi, err := os.Stat(hp)
			if err != nil {
				return nil, false
			}
			if fi.IsDir() {
				return &file{Dir: true, Mode: 0o755, UID: 1000, GID: 1000}, true
			}
			b, _ := os.ReadFile(hp)
			return &file{Data: b, Mode: uint32(fi.Mode().Perm()), UID: 1000, GID: 1000}, true
		}
	}
	switch {
	case strings.HasPrefix(m.Image, "local-dir:"):
		hp := filepath.Join(strings.TrimPrefix(m.Image, "local-dir:"), filepath.FromSlash(p))
		fi, err := os.Stat(hp)
		if err != nil {
			return nil, false
		}
		if fi.IsDir() {
			return &file{Dir: true, Mode: 0o755}, true
		}
		b, _ := os.ReadFile(hp)
		return &file{Data: b, Mode: uint32(fi.Mode().Perm())}, true
	case strings.HasPrefix(m.Image, "local-archive:"):
		f, ok := m.Base[p]
		return f, ok && f != nil
	}
	return nil, false
}

// imageConfig reads the image config of a docker save archive.
type ociConfig struct {
	Config struct {
		User       string   `json:"User"`
		Env        []string `json:"Env"`
		WorkingDir string   `json:"WorkingDir"`
		Cmd        []string `json:"Cmd"`
		Entrypoint []string `json:"Entrypoint"`
	} `json:"config"`
}

func readArchiveMember(archive, name string) ([]byte, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if path.Clean(h.Name) == path.Clean(name) {
			return io.ReadAll(tr)
		}
	}
}

func manifestOf(archive string) (config string, layers []string, err error) {
	b, err := readArchiveMember(archive, "manifest.json")
	if err != nil {
		return "", nil, err
	}
	var man []struct {
		Config string
		Layers []string
	}
	if err := json.Unmarshal(b, &man); err != nil || len(man) == 0 {
		return "", nil, fmt.Errorf("manifest.json: %v", err)
	}
	return man[0].Config, man[0].Layers, nil
}

func imageConfig(archive string) (*ociConfig, error) {
	cfgName, _, err := manifestOf(archive)
	if err != nil {
		return nil, err
	}
	b, err := readArchiveMember(archive, cfgName)
	if err != nil {
		return nil, err
	}
	var c ociConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// indexed are the files of an image the model reads.
var indexed = []string{"/etc/passwd", "/etc/group", "/etc/hosts", "/etc/ssl/certs/ca-certificates.crt"}

// indexArchive reads what the model needs of an image's layers, the last
// layer's word winning (whiteouts remove): the indexed files, and the
// folders at most three deep outside /usr and /var.
func indexArchive(archive string) (map[string]*file, error) {
	_, layers, err := manifestOf(archive)
	if err != nil {
		return nil, err
	}
	index := map[string]*file{}
	for _, l := range layers {
		b, err := readArchiveMember(archive, l)
		if err != nil {
			return nil, err
		}
		var r io.Reader = bytes.NewReader(b)
		if len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b {
			if r, err = gzip.NewReader(r); err != nil {
				return nil, err
			}
		}
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, err
			}
			p := path.Clean("/" + h.Name)
			if base := path.Base(p); strings.HasPrefix(base, ".wh.") {
				delete(index, path.Join(path.Dir(p), strings.TrimPrefix(base, ".wh.")))
				continue
			}
			switch {
			case h.Typeflag == tar.TypeDir && strings.Count(p, "/") <= 3 && !strings.HasPrefix(p, "/usr/") && !strings.HasPrefix(p, "/var/"):
				index[p] = &file{Dir: true, Mode: uint32(h.Mode & 0o7777), UID: h.Uid, GID: h.Gid}
			case h.Typeflag == tar.TypeReg && slices.Contains(indexed, p):
				d, _ := io.ReadAll(tr)
				index[p] = &file{Data: d, Mode: uint32(h.Mode & 0o7777), UID: h.Uid, GID: h.Gid}
			}
		}
	}
	return index, nil
}

// guestUser is the user exec runs as: the image config's User (smolvm
// resolve_image_runtime_defaults), root when none.
func guestUser(m *machine) (uid, gid int, err error) {
	user := m.ImageUser
	if user == "" || user == "root" || user == "0" {
		return 0, 0, nil
	}
	name, group, _ := strings.Cut(user, ":")
	passwd, ok := readGuest(m, "/etc/passwd")
	if !ok {
		return 0, 0, failf("unable to find user %s: no /etc/passwd", name)
	}
	sc := bufio.NewScanner(bytes.NewReader(passwd.data()))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) >= 4 && (f[0] == name || f[2] == name) {
			uid, _ = strconv.Atoi(f[2])
			gid, _ = strconv.Atoi(f[3])
			if group != "" {
				gid, _ = strconv.Atoi(group)
			}
			return uid, gid, nil
		}
	}
	if n, err := strconv.Atoi(name); err == nil {
		return n, n, nil
	}
	return 0, 0, failf("unable to find user %s: no matching entries in passwd file", name)
}

func packCreate(st *state, in *syntax.Invocation, stdout io.Writer) error {
	out := in.Value("--output")
	if strings.EqualFold(filepath.Ext(out), ".smolmachine") {
		return failf("pack create: --output names the executable stub, not the .smolmachine sidecar")
	}
	vm := in.Value("--from-vm")
	m := st.Machines[vm]
	if m == nil {
		return failf("pack from VM: VM '%s' not found", vm)
	}
	if m.State == "running" {
		return failf("pack from VM: VM '%s' is running. Stop it first with: smolvm machine stop --name %s", vm, vm)
	}
	fmt.Fprintf(stdout, "Packing VM '%s' snapshot...\n", vm)
	files := map[string]*file{}
	for p, f := range m.Files {
		files[p] = f
	}
	p := pack{Format: packFormat, FromVM: vm, Image: m.Image, Base: m.Base, ImageUser: m.ImageUser, Files: files,
		Env: m.Env, Cmd: m.Cmd, Workdir: m.Workdir, Net: m.Net}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, []byte("#!fakesmolvm stub\n"), 0o755); err != nil {
		return failf("pack binary: %v", err)
	}
	if err := os.WriteFile(out+".smolmachine", b, 0o644); err != nil {
		return failf("pack binary: %v", err)
	}
	fmt.Fprintf(stdout, "Packed: %s\nAssets: %s.smolmachine\n", out, out)
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
