// Command fakecontainer stands in for Apple's container CLI where it cannot
// run (anything but a Mac): the macos-container backend's tests build it
// and put it first on the PATH as "container".
//
// It implements, statefully, the subset of container 1.2.2 that bb runs:
// images (build, list, tag, delete), containers (create, start, stop, kill,
// delete, list, exec, export, logs), volumes and system version. Every
// command line is parsed with the table of internal/clispec, which cites
// apple/container's documents for each option, so an undocumented flag
// fails as the real CLI's argument parser would (exit 64), and every one is
// recorded. List output is JSON in the shapes 1.2.2 encodes
// (ManagedContainer, ImageResource, VolumeResource; keys sorted, dates
// ISO 8601, as Output.renderJSON writes them).
//
// What a container runs is modelled, not run: start makes its published
// sockets (a listener answering HTTP 403, as the sidecar would a request
// that is not a proxy request) and logs the sidecar's ready line; exec runs
// the command on this machine in the container's own folder, which export
// archives and a snapshot's containers start from. bb's guest side
// (bb-egress guest) is tested for real elsewhere, on Linux: here "guest run
// -- CMD" runs CMD, and "guest attach" runs the agent's command.
//
// The state is in $FAKE_CONTAINER_DIR: state.json, calls.jsonl (one
// {"argv": [...]} per call), faults.json (calls to fail or hang, for
// tests), and fs/<id>, each container's folder. $FAKE_CONTAINER_VERSION is
// the version it reports (1.2.2); FAKE_CONTAINER_APISERVER=down makes it
// answer as when `container system start` was not run.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
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
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bb-bottles/bb/lib/backend/macoscontainer/internal/clispec"
	"github.com/bb-bottles/bb/lib/guest"
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == "__listen" {
		listen(os.Args[2])
		return
	}
	os.Exit(run(os.Args[1:]))
}

// failure is what the real CLI does with an error: "Error: <message>" on
// stderr and exit 1 (ArgumentParser's ExitCode.failure).
type failure struct{ msg string }

func (f *failure) Error() string { return f.msg }

func failf(format string, a ...any) error { return &failure{fmt.Sprintf(format, a...)} }

// exitCode is an exec'd command's status, passed through.
type exitCode int

func (e exitCode) Error() string { return "exit " + strconv.Itoa(int(e)) }

func run(argv []string) int {
	dir := os.Getenv("FAKE_CONTAINER_DIR")
	if dir == "" {
		fmt.Fprintln(os.Stderr, "fakecontainer: FAKE_CONTAINER_DIR is not set")
		return 2
	}
	f := &fake{dir: dir, version: cmpOr(os.Getenv("FAKE_CONTAINER_VERSION"), clispec.Release)}
	if err := f.record(argv); err != nil {
		fmt.Fprintln(os.Stderr, "fakecontainer:", err)
		return 2
	}
	ft, faulted := f.fault(argv)
	if faulted && !ft.After {
		return ft.act()
	}
	line, err := clispec.Parse(argv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\nUsage: see %s %s@%s\n", err, clispec.Repo, clispec.Reference, clispec.Release)
		return 64
	}
	err = f.do(line)
	if faulted {
		return ft.act()
	}
	var code exitCode
	switch {
	case err == nil:
		return 0
	case errors.As(err, &code):
		return int(code)
	default:
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		return 1
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

type fake struct {
	dir     string
	version string
	st      *state
}

// state is everything the fake has.
type state struct {
	Images     []*image     `json:"images"`
	Containers []*container `json:"containers"`
	Volumes    []*volume    `json:"volumes"`
	Seq        int          `json:"seq"`
}

type image struct {
	Ref        string            `json:"ref"` // normalized: docker.io/library/x:tag
	Digest     string            `json:"digest"`
	Labels     map[string]string `json:"labels"`
	Created    time.Time         `json:"created"`
	Entrypoint []string          `json:"entrypoint"`
	Cmd        []string          `json:"cmd"`
	User       string            `json:"user"`
	WorkingDir string            `json:"working_dir"`
	Env        []string          `json:"env"`
	// Files is the root filesystem a snapshot holds (path -> content),
	// from the exported archive it was built from.
	Files map[string]string `json:"files,omitempty"`
}

type mount struct {
	Type     string `json:"type"` // virtiofs, volume
	Source   string `json:"source"`
	Dest     string `json:"dest"`
	ReadOnly bool   `json:"read_only"`
}

type socket struct {
	Host  string `json:"host"`
	Guest string `json:"guest"`
}

type container struct {
	ID         string            `json:"id"`
	Image      string            `json:"image"`
	Digest     string            `json:"digest"`
	Executable string            `json:"executable"`
	Args       []string          `json:"args"`
	Env        []string          `json:"env"`
	User       string            `json:"user"`
	Workdir    string            `json:"workdir"`
	Labels     map[string]string `json:"labels"`
	Mounts     []mount           `json:"mounts"`
	Sockets    []socket          `json:"sockets"`
	Networks   []string          `json:"networks"`
	DNS        bool              `json:"dns"`
	CapAdd     []string          `json:"cap_add"`
	CapDrop    []string          `json:"cap_drop"`
	CPUs       int64             `json:"cpus"`
	Memory     int64             `json:"memory"`
	Ulimits    []string          `json:"ulimits"`
	Init       bool              `json:"init"`
	State      string            `json:"state"` // stopped, running
	Created    time.Time         `json:"created"`
	Started    *time.Time        `json:"started,omitempty"`
	Signals    []string          `json:"signals"`
	Listeners  []int             `json:"listeners"`
	Log        []string          `json:"log"`
}

type volume struct {
	Name    string            `json:"name"`
	Labels  map[string]string `json:"labels"`
	Created time.Time         `json:"created"`
}

// record appends the call to calls.jsonl.
func (f *fake) record(argv []string) error {
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return err
	}
	unlock, err := f.lock("calls.lock")
	if err != nil {
		return err
	}
	defer unlock()
	b, _ := json.Marshal(map[string]any{"argv": argv})
	fh, err := os.OpenFile(filepath.Join(f.dir, "calls.jsonl"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer fh.Close()
	_, err = fh.Write(append(b, '\n'))
	return err
}

// Fault is one entry of faults.json: the first call whose command line
// (joined with spaces) contains Match (is Match, with Exact) fails with Exit and Stderr, or hangs
// until it is signalled; Times (0: always) counts down.
type Fault struct {
	Match string `json:"match"`
	// Exact asks for the whole command line to be Match.
	Exact bool `json:"exact"`
	// After does the call's work first, then fails or hangs: a command
	// interrupted after the runtime did what it asked.
	After  bool   `json:"after"`
	Exit   int    `json:"exit"`
	Stderr string `json:"stderr"`
	Hang   bool   `json:"hang"`
	Times  int    `json:"times"`
}

func (f *fake) fault(argv []string) (Fault, bool) {
	unlock, err := f.lock("faults.lock")
	if err != nil {
		return Fault{}, false
	}
	defer unlock()
	path := filepath.Join(f.dir, "faults.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return Fault{}, false
	}
	var faults []Fault
	if json.Unmarshal(b, &faults) != nil {
		return Fault{}, false
	}
	joined := strings.Join(argv, " ")
	for i, ft := range faults {
		if !strings.Contains(joined, ft.Match) || (ft.Exact && joined != ft.Match) {
			continue
		}
		if ft.Times > 0 {
			faults[i].Times--
			if faults[i].Times == 0 {
				faults = slices.Delete(faults, i, i+1)
			}
			b, _ := json.Marshal(faults)
			os.WriteFile(path, b, 0o600)
		}
		return ft, true
	}
	return Fault{}, false
}

// act fails or hangs as the fault says.
func (ft Fault) act() int {
	if ft.Hang {
		// Killed, as a cancelled command is: the caller sees a signal.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		select {
		case <-sig:
		case <-time.After(time.Minute):
		}
		return 130
	}
	if ft.Stderr != "" {
		fmt.Fprintln(os.Stderr, ft.Stderr)
	}
	return ft.Exit
}

func (f *fake) lock(name string) (func(), error) {
	fh, err := os.OpenFile(filepath.Join(f.dir, name), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX); err != nil {
		fh.Close()
		return nil, err
	}
	return func() { fh.Close() }, nil
}

func (f *fake) load() error {
	f.st = &state{}
	b, err := os.ReadFile(filepath.Join(f.dir, "state.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(b, f.st)
}

func (f *fake) save() error {
	b, err := json.MarshalIndent(f.st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(f.dir, "state.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(f.dir, "state.json"))
}

func (f *fake) do(l *clispec.Line) error {
	name := l.Command.Name()
	if name == "system version" {
		return f.systemVersion(l)
	}
	if os.Getenv("FAKE_CONTAINER_APISERVER") == "down" {
		return failf(`interrupted: "XPC connection error: Connection invalid" (is the container system running? run 'container system start')`)
	}
	if name == "exec" {
		// The command runs without the lock: it may take long, and
		// call the CLI itself.
		return f.exec(l)
	}
	if name == "run" {
		return f.run(l)
	}
	unlock, err := f.lock("state.lock")
	if err != nil {
		return err
	}
	defer unlock()
	if err := f.load(); err != nil {
		return err
	}
	switch name {
	case "build":
		err = f.build(l)
	case "image list":
		err = f.imageList()
	case "image tag":
		err = f.imageTag(l)
	case "image delete":
		err = f.imageDelete(l)
	case "create":
		err = f.create(l)
	case "start":
		err = f.start(l)
	case "stop":
		err = f.stop(l)
	case "kill":
		err = f.kill(l)
	case "delete":
		err = f.delete(l)
	case "list":
		err = f.list(l)
	case "export":
		err = f.export(l)
	case "logs":
		err = f.logs(l)
	case "volume create":
		err = f.volumeCreate(l)
	case "volume delete":
		err = f.volumeDelete(l)
	case "volume list":
		err = f.volumeList()
	default:
		return failf("fakecontainer does not model %q", name)
	}
	if serr := f.save(); err == nil {
		err = serr
	}
	return err
}

func (f *fake) systemVersion(l *clispec.Line) error {
	rows := []map[string]string{{"appName": "container", "buildType": "release", "commit": "0190097", "version": f.version}}
	if os.Getenv("FAKE_CONTAINER_APISERVER") != "down" {
		rows = append(rows, map[string]string{"appName": "container-apiserver", "buildType": "release", "commit": "0190097d",
			"version": "container-apiserver version " + f.version + " (build: release, commit: 0190097)"})
	}
	if v, _ := l.Value("--format"); v != "json" {
		fmt.Println("COMPONENT  VERSION  BUILD  COMMIT")
		for _, r := range rows {
			fmt.Printf("%s  %s  %s  %s\n", r["appName"], r["version"], r["buildType"], r["commit"])
		}
		return nil
	}
	return printJSON(rows)
}

// normalize is ClientImage.normalizeReference with the default registry
// domain: a domain when there is none, library/ on docker.io, :latest.
func normalize(ref string) string {
	name, tag := ref, ""
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		name, tag = ref[:i], ref[i+1:]
	}
	first, _, hasSlash := strings.Cut(name, "/")
	if !hasSlash || (!strings.ContainsAny(first, ".:") && first != "localhost") {
		name = "docker.io/" + name
	}
	if strings.HasPrefix(name, "docker.io/") && strings.Count(name, "/") == 1 {
		name = "docker.io/library/" + strings.TrimPrefix(name, "docker.io/")
	}
	if tag == "" {
		tag = "latest"
	}
	return name + ":" + tag
}

func (f *fake) findImage(ref string) *image {
	n := normalize(ref)
	for _, im := range f.st.Images {
		if im.Ref == n {
			return im
		}
	}
	return nil
}

func (f *fake) build(l *clispec.Line) error {
	ctxDir := "."
	if len(l.Args) > 0 {
		ctxDir = l.Args[0]
	}
	if st, err := os.Stat(ctxDir); err != nil || !st.IsDir() {
		return failf("invalidArgument: %q: context directory %s does not exist", "build", ctxDir)
	}
	dockerfile := filepath.Join(ctxDir, "Dockerfile")
	if v, ok := l.Value("--file"); ok {
		dockerfile = v
	}
	df, err := os.ReadFile(dockerfile)
	if err != nil {
		return failf("invalidArgument: %q", "Dockerfile not found at "+dockerfile)
	}
	tags := l.Values("--tag")
	if len(tags) == 0 {
		return failf("fakecontainer: bb always tags what it builds; this build has no --tag")
	}
	args := map[string]string{}
	for _, a := range l.Values("--build-arg") {
		k, v, _ := strings.Cut(a, "=")
		args[k] = v
	}
	labels := map[string]string{}
	for _, a := range l.Values("--label") {
		k, v, _ := strings.Cut(a, "=")
		labels[k] = v
	}
	h := sha256.New()
	h.Write(df)
	err = filepath.WalkDir(ctxDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(ctxDir, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "\x00%s\x00%d\x00", rel, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return failf("reading the build context: %v", err)
	}
	for _, k := range slices.Sorted(maps.Keys(args)) {
		fmt.Fprintf(h, "\x00arg %s=%s", k, args[k])
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		fmt.Fprintf(h, "\x00label %s=%s", k, labels[k])
	}
	im := &image{Digest: "sha256:" + hex.EncodeToString(h.Sum(nil)), Labels: labels, Created: time.Now().UTC()}
	if err := f.interpret(im, string(df), args, ctxDir); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "#1 [internal] load build definition from %s\n#1 DONE 0.0s\n", filepath.Base(dockerfile))
	fmt.Fprintf(os.Stderr, "#2 exporting to oci image format\n#2 DONE 0.1s\n")
	for _, t := range tags {
		c := *im
		c.Ref = normalize(t)
		f.st.Images = slices.DeleteFunc(f.st.Images, func(o *image) bool { return o.Ref == c.Ref })
		f.st.Images = append(f.st.Images, &c)
	}
	fmt.Println(tags[len(tags)-1])
	return nil
}

// interpret reads what the fake needs of a Dockerfile: the image it
// builds on (its config and files), ENTRYPOINT, CMD, USER, WORKDIR and ENV,
// and an ADD of an exported archive, which a snapshot is.
func (f *fake) interpret(im *image, df string, args map[string]string, ctxDir string) error {
	for line := range strings.SplitSeq(df, "\n") {
		word, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(word) {
		case "ARG":
			k, v, ok := strings.Cut(rest, "=")
			if _, given := args[k]; ok && !given {
				args[k] = v
			}
		case "FROM":
			from := os.Expand(strings.Fields(rest)[0], func(k string) string { return args[k] })
			if from == "scratch" {
				continue
			}
			if base := f.findImage(from); base != nil {
				im.Entrypoint, im.Cmd, im.User, im.WorkingDir, im.Env = base.Entrypoint, base.Cmd, base.User, base.WorkingDir, base.Env
				im.Files = maps.Clone(base.Files)
			}
			// An image from a registry: the real builder pulls it.
		case "ENTRYPOINT":
			im.Entrypoint = execForm(rest)
		case "CMD":
			im.Cmd = execForm(rest)
		case "USER":
			im.User = rest
		case "WORKDIR":
			im.WorkingDir = rest
		case "ENV":
			k, v, _ := strings.Cut(rest, "=")
			im.Env = append(im.Env, k+"="+strings.Trim(v, `"`))
		case "ADD":
			fields := strings.Fields(rest)
			if len(fields) == 2 && strings.HasSuffix(fields[0], ".tar") {
				files, err := readTar(filepath.Join(ctxDir, fields[0]))
				if err != nil {
					return failf("ADD %s: %v", fields[0], err)
				}
				if im.Files == nil {
					im.Files = map[string]string{}
				}
				maps.Copy(im.Files, files)
			}
		}
	}
	return nil
}

func execForm(s string) []string {
	var v []string
	if json.Unmarshal([]byte(s), &v) == nil {
		return v
	}
	return []string{"/bin/sh", "-c", s}
}

func readTar(path string) (map[string]string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	files := map[string]string{}
	tr := tar.NewReader(fh)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("not a tar archive: %w", err)
		}
		if hdr.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, err
			}
			files[strings.TrimPrefix(hdr.Name, "./")] = string(b)
		}
	}
}

func (f *fake) imageList() error {
	out := []map[string]any{}
	sorted := slices.Clone(f.st.Images)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Ref < sorted[j].Ref })
	for _, im := range sorted {
		cfg := map[string]any{"Labels": im.Labels}
		if len(im.Entrypoint) > 0 {
			cfg["Entrypoint"] = im.Entrypoint
		}
		if len(im.Cmd) > 0 {
			cfg["Cmd"] = im.Cmd
		}
		if im.User != "" {
			cfg["User"] = im.User
		}
		if im.WorkingDir != "" {
			cfg["WorkingDir"] = im.WorkingDir
		}
		if len(im.Env) > 0 {
			cfg["Env"] = im.Env
		}
		manifest := "sha256:" + sha256Hex(im.Digest+"/manifest")
		out = append(out, map[string]any{
			"id": strings.TrimPrefix(im.Digest, "sha256:"),
			"configuration": map[string]any{
				"creationDate": im.Created.Format(time.RFC3339),
				"name":         im.Ref,
				"descriptor": map[string]any{
					"digest":    im.Digest,
					"mediaType": "application/vnd.oci.image.index.v1+json",
					"size":      314,
				},
			},
			"variants": []any{map[string]any{
				"digest":   manifest,
				"platform": map[string]any{"architecture": "arm64", "os": "linux"},
				"size":     4096,
				"config": map[string]any{
					"architecture": "arm64", "os": "linux", "created": im.Created.Format(time.RFC3339),
					"config": cfg,
					"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + sha256Hex(im.Digest+"/layer")}},
				},
			}},
		})
	}
	return printJSON(out)
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func (f *fake) imageTag(l *clispec.Line) error {
	src := f.findImage(l.Args[0])
	if src == nil {
		return failf("notFound: %q", "image "+l.Args[0]+" not found")
	}
	c := *src
	c.Ref = normalize(l.Args[1])
	c.Labels = maps.Clone(src.Labels)
	c.Files = maps.Clone(src.Files)
	f.st.Images = slices.DeleteFunc(f.st.Images, func(o *image) bool { return o.Ref == c.Ref })
	f.st.Images = append(f.st.Images, &c)
	return nil
}

func (f *fake) imageDelete(l *clispec.Line) error {
	var errs []string
	for _, ref := range l.Args {
		im := f.findImage(ref)
		if im == nil {
			if !l.Has("--force") {
				errs = append(errs, "image "+ref+" not found")
			}
			continue
		}
		for _, c := range f.st.Containers {
			if c.Image == im.Ref {
				errs = append(errs, fmt.Sprintf("image %s is in use by container %s", ref, c.ID))
				im = nil
				break
			}
		}
		if im != nil {
			f.st.Images = slices.DeleteFunc(f.st.Images, func(o *image) bool { return o == im })
			fmt.Println(ref)
		}
	}
	if len(errs) > 0 {
		return failf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func (f *fake) findContainer(id string) *container {
	for _, c := range f.st.Containers {
		if c.ID == id {
			return c
		}
	}
	return nil
}

func (f *fake) create(l *clispec.Line) error {
	id, _ := l.Value("--name")
	if id == "" {
		f.st.Seq++
		id = fmt.Sprintf("%08x-0000-4000-8000-%012x", f.st.Seq, f.st.Seq)
	}
	if f.findContainer(id) != nil {
		return failf("exists: %q", "container with id "+id+" already exists")
	}
	im := f.findImage(l.Args[0])
	if im == nil {
		// The real CLI would pull it; there is no registry here, and
		// bb only runs images it built.
		return failf("notFound: %q", "image "+normalize(l.Args[0])+" not found")
	}
	c := &container{ID: id, Image: im.Ref, Digest: im.Digest, Labels: map[string]string{}, State: "stopped",
		Created: time.Now().UTC(), DNS: !l.Has("--no-dns"), Init: l.Has("--init"),
		CapAdd: l.Values("--cap-add"), CapDrop: l.Values("--cap-drop"), Ulimits: l.Values("--ulimit"),
		User: im.User, Workdir: im.WorkingDir}
	entry := im.Entrypoint
	if v, ok := l.Value("--entrypoint"); ok {
		entry = []string{v}
	}
	argv := slices.Clone(entry)
	if len(l.Args) > 1 {
		argv = append(argv, l.Args[1:]...)
	} else if _, over := l.Value("--entrypoint"); !over {
		argv = append(argv, im.Cmd...)
	}
	if len(argv) == 0 {
		return failf("invalidArgument: %q", "command/entrypoint not specified for container process")
	}
	c.Executable, c.Args = argv[0], argv[1:]
	env := slices.Clone(im.Env)
	for _, file := range l.Values("--env-file") {
		b, err := os.ReadFile(file)
		if err != nil {
			return failf("invalidArgument: %q", "failed to read envfile at "+file)
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			line = strings.TrimLeft(line, " \t")
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if !strings.Contains(line, "=") {
				v, ok := os.LookupEnv(line)
				if !ok {
					continue
				}
				line += "=" + v
			}
			env = append(env, line)
		}
	}
	for _, e := range l.Values("--env") {
		if !strings.Contains(e, "=") {
			v, ok := os.LookupEnv(e)
			if !ok {
				continue
			}
			e += "=" + v
		}
		env = append(env, e)
	}
	c.Env = dedupeEnv(env)
	if v, ok := l.Value("--user"); ok {
		c.User = v
	}
	if v, ok := l.Value("--workdir"); ok {
		c.Workdir = v
	}
	if c.Workdir == "" {
		c.Workdir = "/"
	}
	for _, lb := range l.Values("--label") {
		k, v, _ := strings.Cut(lb, "=")
		c.Labels[k] = v
	}
	if v, ok := l.Value("--cpus"); ok {
		c.CPUs, _ = strconv.ParseInt(v, 10, 64)
	} else {
		c.CPUs = 4
	}
	c.Memory = 1 << 30
	if v, ok := l.Value("--memory"); ok {
		c.Memory = parseMemory(v)
	}
	nets := l.Values("--network")
	switch {
	case slices.Contains(nets, "none") && len(nets) > 1:
		return failf("unsupported: %q", "no other networks may be created along with network none")
	case slices.Contains(nets, "none"):
	case len(nets) == 0:
		c.Networks = []string{"default"}
	default:
		for _, n := range nets {
			name, _, _ := strings.Cut(n, ",")
			if name != "default" {
				return failf("notFound: %q", "network "+name+" not found")
			}
			c.Networks = append(c.Networks, name)
		}
	}
	for _, v := range l.Values("--volume") {
		parts := strings.Split(strings.TrimLeft(v, ":"), ":")
		m := mount{Source: parts[0], Dest: parts[1], ReadOnly: len(parts) == 3 && slices.Contains(strings.Split(parts[2], ","), "ro")}
		if strings.Contains(m.Source, "/") {
			if _, err := os.Stat(m.Source); err != nil {
				return failf("invalidArgument: %q", "path '"+m.Source+"' does not exist")
			}
			m.Type = "virtiofs"
		} else {
			m.Type = "volume"
			if f.findVolume(m.Source) == nil {
				f.st.Volumes = append(f.st.Volumes, &volume{Name: m.Source, Labels: map[string]string{}, Created: time.Now().UTC()})
				os.MkdirAll(f.volDir(m.Source), 0o700)
				fmt.Fprintf(os.Stderr, "warning: named volume was automatically created volume=%s\n", m.Source)
			}
		}
		c.Mounts = append(c.Mounts, m)
	}
	for _, v := range l.Values("--publish-socket") {
		h, g, _ := strings.Cut(v, ":")
		c.Sockets = append(c.Sockets, socket{Host: h, Guest: g})
	}
	if err := os.MkdirAll(f.fsDir(c.ID), 0o700); err != nil {
		return err
	}
	for p, content := range im.Files {
		dst := filepath.Join(f.fsDir(c.ID), filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(dst), 0o700)
		if err := os.WriteFile(dst, []byte(content), 0o600); err != nil {
			return err
		}
	}
	f.st.Containers = append(f.st.Containers, c)
	fmt.Println(id)
	return nil
}

func dedupeEnv(env []string) []string {
	seen := map[string]int{}
	var out []string
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		if i, ok := seen[k]; ok {
			out[i] = e
			continue
		}
		seen[k] = len(out)
		out = append(out, e)
	}
	return out
}

func parseMemory(s string) int64 {
	s = strings.ToLower(strings.TrimSpace(s))
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	v, _ := strconv.ParseFloat(num, 64)
	mult := map[byte]float64{'b': 1, 'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30, 't': 1 << 40, 'p': 1 << 50}
	m := 1.0
	if unit != "" {
		m = mult[unit[0]]
	}
	return int64(v * m)
}

func (f *fake) fsDir(id string) string { return filepath.Join(f.dir, "fs", id) }

// volDir is a volume's content, on this machine.
func (f *fake) volDir(name string) string { return filepath.Join(f.dir, "vols", name) }

func (f *fake) start(l *clispec.Line) error {
	c := f.findContainer(l.Args[0])
	if c == nil {
		return failf("notFound: %q", "container "+l.Args[0]+" not found")
	}
	if c.State == "running" {
		fmt.Println(c.ID)
		return nil
	}
	for _, m := range c.Mounts {
		if m.Type == "virtiofs" {
			if _, err := os.Stat(m.Source); err != nil {
				return failf("invalidState: %q", "mount source path '"+m.Source+"' does not exist")
			}
		}
	}
	for _, s := range c.Sockets {
		pid, err := startListener(s.Host)
		if err != nil {
			return failf("internalError: %q", "failed to start container: publishing "+s.Host+": "+err.Error())
		}
		c.Listeners = append(c.Listeners, pid)
	}
	now := time.Now().UTC()
	c.State, c.Started = "running", &now
	if strings.HasSuffix(c.Executable, "bb-egress") && len(c.Args) > 0 && c.Args[0] == "serve" {
		listenOn := "unknown"
		for i, a := range c.Args {
			if a == "--listen" && i+1 < len(c.Args) {
				listenOn = strings.TrimPrefix(c.Args[i+1], "unix:")
			}
		}
		c.Log = append(c.Log, "bb-egress: listening on "+listenOn+" (CA /bb/egress/ca/ca.pem)")
	}
	if strings.HasSuffix(c.Executable, "bb-egress") && len(c.Args) > 1 && c.Args[0] == "guest" && c.Args[1] == "init" {
		// What the guest's init logs once it has given root up (tested
		// for real in lib/guest).
		c.Log = append(c.Log, guest.ReadyLine+" 1000 gid 1000, with no capabilities and no new privileges")
	}
	fmt.Println(c.ID)
	return nil
}

// startListener runs "fakecontainer __listen PATH" in its own session and
// waits for the socket, as the runtime's relay listens at a published
// socket's host path once the container boots.
func startListener(path string) (int, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(self, "__listen", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pid := cmd.Process.Pid
	cmd.Process.Release()
	for range 200 {
		if st, err := os.Stat(path); err == nil && st.Mode()&fs.ModeSocket != 0 {
			return pid, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	return 0, errors.New("the socket did not appear")
}

// listen is the published socket's far end: it answers every connection as
// bb-egress answers a request that is not a proxy request, and goes away
// with its socket when signalled.
func listen(path string) {
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		<-sig
		ln.Close()
		os.Remove(path)
		os.Exit(0)
	}()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(conn)
			for {
				line, err := br.ReadString('\n')
				if err != nil || line == "\r\n" || line == "\n" {
					break
				}
			}
			body := "bb-egress: this is the bottle's egress proxy\n"
			fmt.Fprintf(conn, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
		}()
	}
}

func (f *fake) halt(c *container) {
	for _, pid := range c.Listeners {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	for _, s := range c.Sockets {
		for range 100 {
			if _, err := os.Stat(s.Host); err != nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		os.Remove(s.Host)
	}
	c.Listeners = nil
	c.State, c.Started = "stopped", nil
}

func (f *fake) stop(l *clispec.Line) error {
	var errs []string
	for _, id := range l.Args {
		c := f.findContainer(id)
		if c == nil {
			errs = append(errs, "container "+id+" not found")
			continue
		}
		if c.State == "running" {
			f.halt(c)
		}
		fmt.Println(id)
	}
	if len(errs) > 0 {
		return failf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func (f *fake) kill(l *clispec.Line) error {
	sig, _ := l.Value("--signal")
	if sig == "" {
		sig = "KILL"
	}
	for _, id := range l.Args {
		c := f.findContainer(id)
		if c == nil {
			return failf("notFound: %q", "container "+id+" not found")
		}
		if c.State != "running" {
			return failf("invalidState: %q", "container "+id+" is not running")
		}
		c.Signals = append(c.Signals, strings.TrimPrefix(strings.ToUpper(sig), "SIG"))
		if s := strings.TrimPrefix(strings.ToUpper(sig), "SIG"); s == "KILL" || s == "TERM" {
			f.halt(c)
		}
		fmt.Println(id)
	}
	return nil
}

func (f *fake) delete(l *clispec.Line) error {
	var errs []string
	for _, id := range l.Args {
		c := f.findContainer(id)
		if c == nil {
			errs = append(errs, "container "+id+" not found")
			continue
		}
		if c.State == "running" {
			if !l.Has("--force") {
				errs = append(errs, "container "+id+" is running")
				continue
			}
			f.halt(c)
		}
		f.st.Containers = slices.DeleteFunc(f.st.Containers, func(o *container) bool { return o == c })
		os.RemoveAll(f.fsDir(id))
		fmt.Println(id)
	}
	if len(errs) > 0 {
		return failf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// managed is a container as 1.2.2 encodes it in `container list --format
// json`: ManagedContainer {id, configuration, status}.
func (f *fake) managed(c *container) map[string]any {
	var mounts []any
	for _, m := range c.Mounts {
		opts := []string{}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		typ := map[string]any{"virtiofs": map[string]any{}}
		if m.Type == "volume" {
			typ = map[string]any{"volume": map[string]any{"name": m.Source, "format": "ext4",
				"cache": map[string]any{"auto": map[string]any{}}, "sync": map[string]any{"full": map[string]any{}}}}
		}
		mounts = append(mounts, map[string]any{"type": typ, "source": m.Source, "destination": m.Dest, "options": opts})
	}
	var sockets []any
	for _, s := range c.Sockets {
		sockets = append(sockets, map[string]any{"containerPath": s.Guest, "hostPath": s.Host, "permissions": 0o755})
	}
	var nets, attach []any
	for i, n := range c.Networks {
		nets = append(nets, map[string]any{"network": n, "options": map[string]any{"hostname": c.ID, "mtu": 1280}})
		if c.State == "running" {
			attach = append(attach, map[string]any{"network": n, "hostname": c.ID + ".test.",
				"ipv4Address": fmt.Sprintf("192.168.64.%d/24", 2+i), "ipv4Gateway": "192.168.64.1",
				"ipv6Address": "fd00::2/64", "macAddress": "f2:00:00:00:00:02", "mtu": 1280, "variant": "reserved"})
		}
	}
	var rlimits []any
	for _, u := range c.Ulimits {
		typ, vals, _ := strings.Cut(u, "=")
		soft, hard, ok := strings.Cut(vals, ":")
		if !ok {
			hard = soft
		}
		s, _ := strconv.ParseUint(soft, 10, 64)
		h, _ := strconv.ParseUint(hard, 10, 64)
		rlimits = append(rlimits, map[string]any{"limit": "RLIMIT_" + strings.ToUpper(typ), "soft": s, "hard": h})
	}
	user := map[string]any{"id": map[string]any{"uid": 0, "gid": 0}}
	if c.User != "" {
		user = map[string]any{"raw": map[string]any{"userString": c.User}}
	}
	cfg := map[string]any{
		"id": c.ID,
		"image": map[string]any{"reference": c.Image, "descriptor": map[string]any{
			"digest": c.Digest, "mediaType": "application/vnd.oci.image.index.v1+json", "size": 314}},
		"mounts": orEmpty(mounts), "publishedPorts": []any{}, "publishedSockets": orEmpty(sockets),
		"labels": c.Labels, "sysctls": map[string]any{}, "networks": orEmpty(nets),
		"rosetta": false, "platform": map[string]any{"architecture": "arm64", "os": "linux"},
		"initProcess": map[string]any{"executable": c.Executable, "arguments": orEmptyStrings(c.Args),
			"environment": orEmptyStrings(c.Env), "workingDirectory": c.Workdir, "terminal": false, "user": user,
			"supplementalGroups": []any{}, "rlimits": orEmpty(rlimits)},
		"resources":      map[string]any{"cpus": c.CPUs, "memoryInBytes": c.Memory, "cpuOverhead": 1},
		"runtimeHandler": "container-runtime-linux", "virtualization": false, "ssh": false, "readOnly": false,
		"useInit": c.Init, "capAdd": orEmptyStrings(c.CapAdd), "capDrop": orEmptyStrings(c.CapDrop),
		"creationDate": c.Created.Format(time.RFC3339),
	}
	if c.DNS {
		cfg["dns"] = map[string]any{"nameservers": []string{}, "domain": "test", "searchDomains": []string{}, "options": []string{}}
	}
	status := map[string]any{"state": c.State, "networks": orEmpty(attach)}
	if c.Started != nil {
		status["startedDate"] = c.Started.Format(time.RFC3339)
	}
	return map[string]any{"id": c.ID, "configuration": cfg, "status": status}
}

func orEmpty(v []any) []any {
	if v == nil {
		return []any{}
	}
	return v
}

func orEmptyStrings(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

func (f *fake) list(l *clispec.Line) error {
	out := []any{}
	for _, c := range f.st.Containers {
		if c.State == "running" || l.Has("--all") {
			out = append(out, f.managed(c))
		}
	}
	if v, _ := l.Value("--format"); v != "json" {
		fmt.Println("ID  IMAGE  OS  ARCH  STATE  IP  CPUS  MEMORY  STARTED")
		for _, c := range f.st.Containers {
			if c.State == "running" || l.Has("--all") {
				fmt.Printf("%s  %s  linux  arm64  %s\n", c.ID, c.Image, c.State)
			}
		}
		return nil
	}
	return printJSON(out)
}

func (f *fake) export(l *clispec.Line) error {
	c := f.findContainer(l.Args[0])
	if c == nil {
		return failf("notFound: %q", "container "+l.Args[0]+" not found")
	}
	if c.State == "running" && !atLeast(f.version, 1, 2, 1) {
		// Before 1.2.1 (apple/container #1630) only a stopped container
		// could be exported.
		return failf("invalidState: %q", "container "+c.ID+" must be stopped before exporting")
	}
	out, ok := l.Value("--output")
	if !ok {
		return failf("fakecontainer: bb always exports to a file (--output)")
	}
	tmp := out + ".fake-tmp"
	fh, err := os.Create(tmp)
	if err != nil {
		return failf("internalError: %v", err)
	}
	tw := tar.NewWriter(fh)
	add := func(name, content string) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg, ModTime: time.Now()})
		tw.Write([]byte(content))
	}
	base := f.fsDir(c.ID)
	filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(base, p)
		add(filepath.ToSlash(rel), string(b))
		return nil
	})
	add("etc/bb-fake/exported-from", c.ID+" "+c.Image+"\n")
	if err := errors.Join(tw.Close(), fh.Close()); err != nil {
		return failf("internalError: %v", err)
	}
	return os.Rename(tmp, out)
}

func atLeast(v string, major, minor, patch int) bool {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	n := [3]int{}
	for i := range parts {
		digits := strings.TrimRightFunc(parts[i], func(r rune) bool { return r < '0' || r > '9' })
		n[i], _ = strconv.Atoi(digits)
	}
	want := [3]int{major, minor, patch}
	for i := range 3 {
		if n[i] != want[i] {
			return n[i] > want[i]
		}
	}
	return true
}

func (f *fake) logs(l *clispec.Line) error {
	c := f.findContainer(l.Args[0])
	if c == nil {
		return failf("notFound: %q", "container "+l.Args[0]+" not found")
	}
	lines := c.Log
	if v, ok := l.Value("-n"); ok {
		n, _ := strconv.Atoi(v)
		if n < len(lines) {
			lines = lines[len(lines)-n:]
		}
	}
	for _, s := range lines {
		fmt.Println(s)
	}
	return nil
}

func (f *fake) findVolume(name string) *volume {
	for _, v := range f.st.Volumes {
		if v.Name == name {
			return v
		}
	}
	return nil
}

func (f *fake) volumeCreate(l *clispec.Line) error {
	name := l.Args[0]
	if f.findVolume(name) != nil {
		return failf("volume '%s' already exists", name)
	}
	v := &volume{Name: name, Labels: map[string]string{}, Created: time.Now().UTC()}
	if err := os.MkdirAll(f.volDir(name), 0o700); err != nil {
		return err
	}
	for _, lb := range l.Values("--label") {
		k, val, _ := strings.Cut(lb, "=")
		v.Labels[k] = val
	}
	f.st.Volumes = append(f.st.Volumes, v)
	fmt.Println(name)
	return nil
}

func (f *fake) volumeDelete(l *clispec.Line) error {
	var errs []string
	for _, name := range l.Args {
		v := f.findVolume(name)
		if v == nil {
			errs = append(errs, "volume '"+name+"' not found")
			continue
		}
		inUse := false
		for _, c := range f.st.Containers {
			for _, m := range c.Mounts {
				inUse = inUse || (m.Type == "volume" && m.Source == name)
			}
		}
		if inUse {
			errs = append(errs, "volume '"+name+"' is in use and cannot be deleted")
			continue
		}
		f.st.Volumes = slices.DeleteFunc(f.st.Volumes, func(o *volume) bool { return o == v })
		os.RemoveAll(f.volDir(name))
		fmt.Println(name)
	}
	if len(errs) > 0 {
		return failf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func (f *fake) volumeList() error {
	out := []any{}
	for _, v := range f.st.Volumes {
		out = append(out, map[string]any{"id": v.Name, "configuration": map[string]any{
			"name": v.Name, "driver": "local", "format": "ext4",
			"source":       "/Users/fido/Library/Application Support/com.apple.container/volumes/" + v.Name + "/volume.img",
			"creationDate": v.Created.Format(time.RFC3339), "labels": v.Labels, "options": map[string]any{}}})
	}
	return printJSON(out)
}

// run is `container run --rm`: the command on this machine, its mounts'
// paths in its arguments turned into their folders here (a volume's
// content is vols/NAME), /tmp a folder of the run's own. Nothing of it
// stays.
func (f *fake) run(l *clispec.Line) error {
	if !l.Has("--rm") {
		return failf("fakecontainer models run --rm only")
	}
	unlock, err := f.lock("state.lock")
	if err != nil {
		return err
	}
	if err := f.load(); err != nil {
		unlock()
		return err
	}
	im := f.findImage(l.Args[0])
	paths := map[string]string{}
	for _, v := range l.Values("--volume") {
		parts := strings.Split(v, ":")
		src := parts[0]
		if !strings.Contains(src, "/") {
			if f.findVolume(src) == nil {
				unlock()
				return failf("notFound: %q", "volume "+src+" not found")
			}
			src = f.volDir(src)
		} else if _, err := os.Stat(src); err != nil {
			unlock()
			return failf("invalidArgument: %q", "path '"+src+"' does not exist")
		}
		paths[parts[1]] = src
	}
	unlock()
	if im == nil {
		return failf("notFound: %q", "image "+normalize(l.Args[0])+" not found")
	}
	tmp, err := os.MkdirTemp(f.dir, "run-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	paths["/tmp"] = tmp
	targets := slices.Sorted(maps.Keys(paths))
	slices.SortFunc(targets, func(a, b string) int { return len(b) - len(a) })
	var pairs []string
	for _, t := range targets {
		pairs = append(pairs, t, paths[t])
	}
	rewrite := strings.NewReplacer(pairs...).Replace // one pass: a folder here may be under /tmp too
	argv := slices.Clone(im.Entrypoint)
	if v, ok := l.Value("--entrypoint"); ok {
		argv = []string{v}
	}
	argv = append(argv, l.Args[1:]...)
	for i := range argv {
		argv[i] = rewrite(argv[i])
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = tmp
	cmd.Env = append(slices.Clone(im.Env), "PATH="+os.Getenv("PATH"), "HOME="+tmp)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return exitCode(ee.ExitCode())
	}
	return err
}

// exec runs the command on this machine, in the container's folder, with
// the container's environment: the fake's model of a process in the
// container. The guest side's own commands are modelled (see the package
// comment).
func (f *fake) exec(l *clispec.Line) error {
	unlock, err := f.lock("state.lock")
	if err != nil {
		return err
	}
	if err := f.load(); err != nil {
		unlock()
		return err
	}
	c := f.findContainer(l.Args[0])
	unlock()
	if c == nil {
		return failf("notFound: %q", "container "+l.Args[0]+" not found")
	}
	if c.State != "running" {
		return failf("invalidState: %q", "container "+c.ID+" is not running")
	}
	argv := l.Args[1:]
	attach := false
	if len(argv) > 2 && strings.HasSuffix(argv[0], "/bb-egress") && argv[1] == "guest" {
		switch argv[2] {
		case "run":
			i := slices.Index(argv, "--")
			if i < 0 || i+1 >= len(argv) {
				return failf("fakecontainer: guest run without -- CMD")
			}
			argv = argv[i+1:]
		case "attach":
			i := slices.Index(c.Args, "--")
			if i < 0 || i+1 >= len(c.Args) {
				return failf("fakecontainer: the container's init has no agent command after --")
			}
			argv = c.Args[i+1:]
			attach = true
		}
	}
	if !l.Has("--interactive") {
		// "stdin remains closed unless -i/--interactive is specified"
		null, err := os.Open(os.DevNull)
		if err == nil {
			os.Stdin = null
		}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = f.fsDir(c.ID)
	cmd.Env = c.Env
	if !slices.ContainsFunc(c.Env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		cmd.Env = append(slices.Clone(c.Env), "PATH="+os.Getenv("PATH"))
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	if err := cmd.Start(); err != nil {
		return failf("internalError: %q", "failed to exec process "+err.Error())
	}
	go func() {
		for s := range sig {
			cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return exitCode(128 + int(ws.Signal()))
		}
	}
	if attach {
		// The agent's command ended by itself: its init exits with it,
		// and the container stops.
		f.stopAfterAgent(c.ID)
	}
	if errors.As(err, &ee) {
		return exitCode(ee.ExitCode())
	}
	return err
}

func (f *fake) stopAfterAgent(id string) {
	unlock, err := f.lock("state.lock")
	if err != nil {
		return
	}
	defer unlock()
	if f.load() != nil {
		return
	}
	if c := f.findContainer(id); c != nil && c.State == "running" {
		f.halt(c)
		f.save()
	}
}

func printJSON(v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := os.Stdout.Write(buf.Bytes())
	return err
}
