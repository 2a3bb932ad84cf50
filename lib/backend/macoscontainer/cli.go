package macoscontainer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/bb-bottles/bb/lib/backend/macoscontainer/internal/clispec"
)

// Tool runs Apple's container CLI.
type Tool struct {
	// Path is the CLI ("container" on the PATH when empty).
	Path string
	// Environ is the environment the CLI starts from (os.Environ() when
	// nil). Variables a call sets (Call.Env) replace those of the same
	// name, and EGRESS_TOKEN_* ones are never passed on unless a call sets
	// them: only the sidecar's create gets token values.
	Environ []string
}

// Call is one run of the CLI.
type Call struct {
	Args []string
	// Env are NAME=value pairs for the CLI's own environment, where the
	// CLI reads the values of `--env NAME` options: values never on its
	// command line, where any process of the machine could read them.
	Env []string
	// Stdin, Stdout and Stderr, when set, are the CLI's; an unset Stdout is
	// captured and returned, an unset Stderr is kept for the error.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// SysProcAttr is passed on (a terminal session's).
	SysProcAttr *syscall.SysProcAttr
}

// ToolError is a CLI run that failed: its command (the words naming it,
// never option values) and what it said.
type ToolError struct {
	Command string
	Code    int
	Said    string
}

func (e *ToolError) Error() string {
	if e.Said == "" {
		return fmt.Sprintf("container %s: exit status %d", e.Command, e.Code)
	}
	return fmt.Sprintf("container %s: %s", e.Command, e.Said)
}

// ErrNoTool is matched by the error of a run whose CLI is not installed.
var ErrNoTool = errors.New("the container CLI is not installed")

func (t *Tool) path() string {
	if t.Path == "" {
		return "container"
	}
	return t.Path
}

// Output runs args and returns what the CLI printed on stdout.
func (t *Tool) Output(ctx context.Context, args ...string) ([]byte, error) {
	return t.Run(ctx, Call{Args: args})
}

// Run runs c and returns its stdout unless c.Stdout takes it. Cancelling ctx
// interrupts the CLI (SIGINT, then SIGKILL after 5s), so that it can end
// what it started.
func (t *Tool) Run(ctx context.Context, c Call) ([]byte, error) {
	cmd := exec.CommandContext(ctx, t.path(), c.Args...)
	cmd.Env = t.env(c.Env)
	cmd.Stdin = c.Stdin
	var out, errBuf bytes.Buffer
	cmd.Stdout = &out
	if c.Stdout != nil {
		cmd.Stdout = c.Stdout
	}
	cmd.Stderr = &errBuf
	if c.Stderr != nil {
		cmd.Stderr = io.MultiWriter(c.Stderr, &tail{buf: &errBuf, max: 16 << 10})
	}
	cmd.SysProcAttr = c.SysProcAttr
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err == nil {
		return out.Bytes(), nil
	}
	name := commandName(c.Args)
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("running container %s: %w", name, ErrNoTool)
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("container %s: %w", name, ctx.Err())
	}
	te := &ToolError{Command: name, Code: -1, Said: said(errBuf.String())}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		te.Code = ee.ExitCode()
		return out.Bytes(), te
	}
	return nil, fmt.Errorf("running container %s: %w", name, err)
}

// Start starts c with its streams as given (nil ones are /dev/null), for
// the caller to wait for: a terminal session.
func (t *Tool) Start(ctx context.Context, c Call) (*exec.Cmd, error) {
	cmd := exec.CommandContext(ctx, t.path(), c.Args...)
	cmd.Env = t.env(c.Env)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Stdin, c.Stdout, c.Stderr
	cmd.SysProcAttr = c.SysProcAttr
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("running container %s: %w", commandName(c.Args), ErrNoTool)
		}
		return nil, fmt.Errorf("running container %s: %w", commandName(c.Args), err)
	}
	return cmd, nil
}

// env is the CLI's environment: Environ (or this process's) without the
// variables c sets and without token values, then c's.
func (t *Tool) env(set []string) []string {
	base := t.Environ
	if base == nil {
		base = os.Environ()
	}
	names := map[string]bool{}
	for _, kv := range set {
		k, _, _ := strings.Cut(kv, "=")
		names[k] = true
	}
	var out []string
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if names[k] || strings.HasPrefix(k, "EGRESS_TOKEN_") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, set...)
}

// commandName names a command line by its command and what it acts on
// ("create bot-bottle-x", "build bb-egress:0123abcd4567"): no option values,
// which may be long, and nothing a command passes on to a container.
func commandName(args []string) string {
	l, err := clispec.Parse(args)
	if err != nil {
		if c, _, ferr := clispec.Find(args); ferr == nil {
			return c.Name()
		}
		if len(args) > 0 {
			return args[0]
		}
		return ""
	}
	name := l.Command.Name()
	switch {
	case l.Has("--name"):
		v, _ := l.Value("--name")
		name += " " + v
	case l.Has("--tag"):
		v, _ := l.Value("--tag")
		name += " " + v
	case len(l.Args) > 0 && l.Command.Name() != "build":
		name += " " + l.Args[0]
	}
	return name
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r`)

// said is what the CLI's stderr says of its failure: its "Error:" lines
// (swift-argument-parser prints the error so), else its last line, without
// terminal control sequences and cut at 1 KiB.
func said(stderr string) string {
	stderr = printable(stderr)
	var errLines, all []string
	for l := range strings.SplitSeq(stderr, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		all = append(all, l)
		if strings.HasPrefix(l, "Error:") {
			errLines = append(errLines, strings.TrimSpace(strings.TrimPrefix(l, "Error:")))
		}
	}
	s := strings.Join(errLines, "; ")
	if s == "" && len(all) > 0 {
		s = all[len(all)-1]
	}
	if len(s) > 1024 {
		s = s[:1024] + "…"
	}
	return s
}

// printable is s without terminal control sequences, every other control
// or unprintable character but line breaks and tabs turned into '?': what
// the CLI prints may quote a container's log, which an agent writes.
func printable(s string) string {
	s = ansi.ReplaceAllString(s, "")
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' {
			return r
		}
		if !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, s)
}

// tail keeps the last max bytes written.
type tail struct {
	buf *bytes.Buffer
	max int
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

// Version is a release of the container CLI.
type Version struct{ Major, Minor, Patch int }

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Less says whether v is older than w.
func (v Version) Less(w Version) bool {
	if v.Major != w.Major {
		return v.Major < w.Major
	}
	if v.Minor != w.Minor {
		return v.Minor < w.Minor
	}
	return v.Patch < w.Patch
}

var versionRE = regexp.MustCompile(`(\d+)\.(\d+)(?:\.(\d+))?`)

// ParseVersion reads the first "X.Y[.Z]" in s ("1.2.2", "container-apiserver
// version 1.2.2 (build: release, ...)").
func ParseVersion(s string) (Version, error) {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return Version{}, fmt.Errorf("no version number in %q", s)
	}
	var v Version
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	if m[3] != "" {
		v.Patch, _ = strconv.Atoi(m[3])
	}
	return v, nil
}

// Versions are `container system version --format json`: the CLI's and,
// when its API server answered, the server's. (docs/command-reference.md,
// "container system version", JSON Output.)
type Versions struct {
	CLI    Version
	Server *Version
}

type versionRow struct {
	AppName string `json:"appName"`
	Version string `json:"version"`
}

// DecodeVersions reads `container system version --format json`.
func DecodeVersions(b []byte) (Versions, error) {
	var rows []versionRow
	if err := json.Unmarshal(b, &rows); err != nil {
		return Versions{}, fmt.Errorf("reading container system version: %w", err)
	}
	var vs Versions
	found := false
	for _, r := range rows {
		v, err := ParseVersion(r.Version)
		if err != nil {
			return Versions{}, fmt.Errorf("reading container system version: %s: %w", r.AppName, err)
		}
		switch r.AppName {
		case "container":
			vs.CLI, found = v, true
		case "container-apiserver":
			vs.Server = &v
		}
	}
	if !found {
		return Versions{}, errors.New("reading container system version: no row for the container CLI")
	}
	return vs, nil
}

// Container is what bb reads of one element of `container list --all
// --format json`.
type Container struct {
	ID     string
	Image  string
	Labels map[string]string
	// State is running, stopped, stopping or unknown (RuntimeStatus).
	State string
}

// Running says whether the container's state is running.
func (c Container) Running() bool { return c.State == "running" }

// listed is the element's JSON. Releases 1.0.0 and later print a
// ManagedContainer, {id, configuration, status: {state, networks,
// startedDate}} (Sources/ContainerResource/Container/ManagedContainer.swift
// and ContainerStatus.swift); older ones, and the example of docs/how-to.md
// ("Get container or image details"), have status as a string beside
// configuration. Both read.
type listed struct {
	ID            string `json:"id"`
	Configuration struct {
		ID     string            `json:"id"`
		Labels map[string]string `json:"labels"`
		Image  struct {
			Reference string `json:"reference"`
		} `json:"image"`
	} `json:"configuration"`
	Status json.RawMessage `json:"status"`
}

// DecodeContainers reads `container list --format json`.
func DecodeContainers(b []byte) ([]Container, error) {
	var items []listed
	if err := json.Unmarshal(b, &items); err != nil {
		return nil, fmt.Errorf("reading container list: %w", err)
	}
	out := make([]Container, 0, len(items))
	for i, it := range items {
		c := Container{ID: it.ID, Image: it.Configuration.Image.Reference, Labels: it.Configuration.Labels}
		if c.ID == "" {
			c.ID = it.Configuration.ID
		}
		if c.ID == "" {
			return nil, fmt.Errorf("reading container list: element %d has no id", i)
		}
		state, err := decodeState(it.Status)
		if err != nil {
			return nil, fmt.Errorf("reading container list: %s: %w", c.ID, err)
		}
		c.State = state
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		out = append(out, c)
	}
	return out, nil
}

func decodeState(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", errors.New("no status")
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var st struct {
		State string `json:"state"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return "", fmt.Errorf("status: %w", err)
	}
	if st.State == "" {
		return "", errors.New("status has no state")
	}
	return st.State, nil
}

// Image is what bb reads of one element of `container image list --format
// json`.
type Image struct {
	// Name is the reference as the CLI stores it, normalized
	// (docker.io/library/bb-egress:0123abcd4567).
	Name   string
	Digest string
	Labels map[string]string
}

// listedImage is the element's JSON: from 1.0.0 an ImageResource, {id,
// configuration: {name, descriptor, creationDate}, variants: [{platform,
// digest, size, config}]} (Sources/ContainerResource/Image/ImageResource.swift);
// labels are the OCI image config's (variants[].config.config.Labels) and
// the index's annotations. Before 1.0.0: {reference, descriptor}.
type listedImage struct {
	Configuration struct {
		Name       string `json:"name"`
		Descriptor struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"descriptor"`
	} `json:"configuration"`
	Variants []struct {
		Platform struct {
			OS           string `json:"os"`
			Architecture string `json:"architecture"`
		} `json:"platform"`
		Config struct {
			Config struct {
				Labels map[string]string `json:"Labels"`
			} `json:"config"`
		} `json:"config"`
	} `json:"variants"`
	Reference  string `json:"reference"`
	Descriptor struct {
		Digest string `json:"digest"`
	} `json:"descriptor"`
}

// DecodeImages reads `container image list --format json`.
func DecodeImages(b []byte) ([]Image, error) {
	var items []listedImage
	if err := json.Unmarshal(b, &items); err != nil {
		return nil, fmt.Errorf("reading container image list: %w", err)
	}
	out := make([]Image, 0, len(items))
	for i, it := range items {
		im := Image{Name: it.Configuration.Name, Digest: it.Configuration.Descriptor.Digest, Labels: map[string]string{}}
		if im.Name == "" {
			im.Name, im.Digest = it.Reference, it.Descriptor.Digest
		}
		if im.Name == "" {
			return nil, fmt.Errorf("reading container image list: element %d has no name", i)
		}
		for k, v := range it.Configuration.Descriptor.Annotations {
			im.Labels[k] = v
		}
		for _, v := range it.Variants {
			if v.Platform.OS == "unknown" && v.Platform.Architecture == "unknown" {
				continue // an attestation manifest
			}
			for k, val := range v.Config.Config.Labels {
				im.Labels[k] = val
			}
		}
		out = append(out, im)
	}
	return out, nil
}

// Volume is what bb reads of one element of `container volume list
// --format json`: a VolumeResource, {id, configuration: {name, labels,
// ...}} (Sources/ContainerResource/Volume/VolumeResource.swift).
type Volume struct {
	Name   string
	Labels map[string]string
}

// DecodeVolumes reads `container volume list --format json`.
func DecodeVolumes(b []byte) ([]Volume, error) {
	var items []struct {
		ID            string `json:"id"`
		Configuration struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		} `json:"configuration"`
	}
	if err := json.Unmarshal(b, &items); err != nil {
		return nil, fmt.Errorf("reading container volume list: %w", err)
	}
	out := make([]Volume, 0, len(items))
	for i, it := range items {
		v := Volume{Name: it.Configuration.Name, Labels: it.Configuration.Labels}
		if v.Name == "" {
			v.Name = it.ID
		}
		if v.Name == "" {
			return nil, fmt.Errorf("reading container volume list: element %d has no name", i)
		}
		if v.Labels == nil {
			v.Labels = map[string]string{}
		}
		out = append(out, v)
	}
	return out, nil
}

// NormalizeRef is the reference as the CLI stores ref
// (ClientImage.normalizeReference with the default registry, docker.io):
// a domain where there is none, library/ for a one-part name on docker.io,
// :latest where there is no tag or digest.
func NormalizeRef(ref string) string {
	name, suffix := ref, ""
	if i := strings.Index(ref, "@"); i >= 0 {
		name, suffix = ref[:i], ref[i:]
	} else if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		name, suffix = ref[:i], ref[i:]
	}
	first, _, hasSlash := strings.Cut(name, "/")
	if !hasSlash || (!strings.ContainsAny(first, ".:") && first != "localhost") {
		name = "docker.io/" + name
	}
	if strings.HasPrefix(name, "docker.io/") && strings.Count(name, "/") == 1 {
		name = "docker.io/library/" + strings.TrimPrefix(name, "docker.io/")
	}
	if suffix == "" {
		suffix = ":latest"
	}
	return name + suffix
}

// SameRef says whether a listed image name is ref: the same once
// normalized, or ref under another registry domain the person configured.
func SameRef(listed, ref string) bool {
	if listed == ref || listed == NormalizeRef(ref) {
		return true
	}
	n := strings.TrimPrefix(NormalizeRef(ref), "docker.io/")
	return strings.HasSuffix(listed, "/"+n) || strings.HasSuffix(listed, "/"+strings.TrimPrefix(n, "library/"))
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}
