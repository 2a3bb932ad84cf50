package provider

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var testBottle = Bottle{Label: "review #42", Slug: "demo-abcd", Color: "orange", RGB: "#f76b15",
	Prompt: "Make the tests pass.", Workdir: "/workspace",
	Placeholders: map[string]string{"ANTHROPIC_API_KEY": "sk-ant-api03-bb-placeholder-0123456789abcdefghij"}}

// byPath indexes files by path, failing on a duplicate.
func byPath(t *testing.T, files []File) map[string]File {
	t.Helper()
	m := map[string]File{}
	for _, f := range files {
		if _, dup := m[f.Path]; dup {
			t.Errorf("%s provisioned twice", f.Path)
		}
		m[f.Path] = f
	}
	return m
}

func paths(files []File) []string {
	var ps []string
	for _, f := range files {
		ps = append(ps, f.Path+" "+f.Mode+" "+f.Source)
	}
	return ps
}

func TestProvisionClaude(t *testing.T) {
	p, _ := Lookup("claude", "")
	files, err := p.Provision(testBottle)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/home/agent/.bb/prompt.md 0644 manifest",
		"/home/agent/.claude.json 0600 provider:claude",
		"/home/agent/.claude/bb-statusline.sh 0755 provider:claude",
		"/home/agent/.claude/settings.json 0644 provider:claude",
		"/home/agent/.claude/skills/README.md 0644 provider:claude",
	}
	if diff := cmp.Diff(want, paths(files)); diff != "" {
		t.Fatalf("files (-want +got):\n%s", diff)
	}
	fs := byPath(t, files)
	if got := fs["/home/agent/.bb/prompt.md"].Content; got != testBottle.Prompt {
		t.Errorf("prompt.md = %q", got)
	}

	// settings.json is the JSON Claude Code documents: statusLine of type
	// command, pointing at the provisioned executable script.
	var settings struct {
		StatusLine struct {
			Type    string `json:"type"`
			Command string `json:"command"`
			Padding *int   `json:"padding"`
		} `json:"statusLine"`
		SkipDangerousModePermissionPrompt bool `json:"skipDangerousModePermissionPrompt"`
	}
	dec := json.NewDecoder(strings.NewReader(fs["/home/agent/.claude/settings.json"].Content))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&settings); err != nil {
		t.Fatalf("settings.json: %v", err)
	}
	sl := settings.StatusLine
	if sl.Type != "command" || sl.Padding == nil || *sl.Padding != 0 {
		t.Errorf("statusLine = %+v", sl)
	}
	if !settings.SkipDangerousModePermissionPrompt {
		t.Error("settings.json does not skip the bypass-permissions confirmation: an unattended start would stop at it")
	}
	// ~/.claude.json: the wizard done, and the placeholder key approved by
	// its last 20 characters; Claude Code's own state, so kept on resume.
	st := fs["/home/agent/.claude.json"]
	var state struct {
		HasCompletedOnboarding bool `json:"hasCompletedOnboarding"`
		CustomAPIKeyResponses  struct {
			Approved []string `json:"approved"`
		} `json:"customApiKeyResponses"`
	}
	if err := json.Unmarshal([]byte(st.Content), &state); err != nil || !state.HasCompletedOnboarding || !st.Keep {
		t.Errorf(".claude.json = %+v (%v), keep %v", state, err, st.Keep)
	}
	if ph := testBottle.Placeholders["ANTHROPIC_API_KEY"]; len(state.CustomAPIKeyResponses.Approved) != 1 ||
		state.CustomAPIKeyResponses.Approved[0] != ph[len(ph)-20:] {
		t.Errorf("approved keys %q, placeholder %q", state.CustomAPIKeyResponses.Approved, ph)
	}
	script, ok := fs[sl.Command]
	if !ok || script.Mode != "0755" {
		t.Fatalf("statusLine.command %q is not a provisioned executable (%+v)", sl.Command, script)
	}

	// The script runs: it shows the label and slug in the bottle's colour,
	// and the model Claude Code sends on stdin.
	out := runStatusLine(t, script.Content, `{"model": {"id": "claude-x", "display_name": "Opus"}, "workspace": {"current_dir": "/workspace"}}`)
	if want := "\x1b[1;38;2;247;107;21m● review #42\x1b[0m \x1b[2m(demo-abcd)\x1b[0m \x1b[2mOpus\x1b[0m\n"; out != want {
		t.Errorf("status line\n got %q\nwant %q", out, want)
	}
}

// A label is a person's text: the status line prints it as it is.
func TestStatusLineQuoting(t *testing.T) {
	p, _ := Lookup("claude", "")
	b := testBottle
	b.Label = `it's $(echo owned) "x" \n %s`
	files, err := p.Provision(b)
	if err != nil {
		t.Fatal(err)
	}
	out := runStatusLine(t, byPath(t, files)["/home/agent/.claude/bb-statusline.sh"].Content, "{}")
	if want := "● " + b.Label + "\x1b[0m"; !strings.Contains(out, want) {
		t.Errorf("status line %q does not hold %q", out, want)
	}
}

func runStatusLine(t *testing.T, script, input string) string {
	t.Helper()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	f := filepath.Join(t.TempDir(), "statusline.sh")
	if err := os.WriteFile(f, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(f)
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("running the status line: %v", err)
	}
	return string(out)
}

func TestProvisionCodex(t *testing.T) {
	p, _ := Lookup("codex", "")
	files, err := p.Provision(testBottle)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/home/agent/.bb/prompt.md 0644 manifest",
		"/home/agent/.codex/config.toml 0644 provider:codex",
	}
	if diff := cmp.Diff(want, paths(files)); diff != "" {
		t.Fatalf("files (-want +got):\n%s", diff)
	}
	text := byPath(t, files)["/home/agent/.codex/config.toml"].Content
	got, comments, err := parseTOML(text)
	if err != nil {
		t.Fatalf("config.toml: %v\n%s", err, text)
	}
	wantKeys := map[string]any{
		"check_for_update_on_startup":       false,
		"tui.status_line":                   []string{"model-with-reasoning", "current-dir", "git-branch", "context-used"},
		"tui.terminal_title":                []string{"project-name", "spinner", "run-state"},
		"tui.theme":                         "ansi",
		`projects."/workspace".trust_level`: "trusted",
	}
	if diff := cmp.Diff(wantKeys, got); diff != "" {
		t.Errorf("config.toml keys (-want +got):\n%s", diff)
	}
	for _, s := range []string{`"review #42"`, "demo-abcd", "orange", "#f76b15"} {
		if !strings.Contains(comments, s) {
			t.Errorf("config.toml's header does not name %s:\n%s", s, comments)
		}
	}
}

// parseTOML reads the subset of TOML that codexFiles writes — comments,
// [table] headers (with quoted keys), and key = value with a basic string,
// a boolean or an array of basic strings — and fails on anything else. It
// returns the values by dotted path, and the comments.
func parseTOML(text string) (map[string]any, string, error) {
	vals := map[string]any{}
	var comments strings.Builder
	table, tables := "", map[string]bool{}
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		switch {
		case strings.TrimSpace(line) == "":
		case strings.HasPrefix(line, "#"):
			comments.WriteString(line + "\n")
		case strings.HasPrefix(line, "["):
			if !strings.HasSuffix(line, "]") {
				return nil, "", fmt.Errorf("line %d: bad table header %q", n, line)
			}
			table = line[1 : len(line)-1]
			if tables[table] {
				return nil, "", fmt.Errorf("line %d: table %s twice", n, table)
			}
			tables[table] = true
		default:
			k, v, ok := strings.Cut(line, " = ")
			if !ok || strings.ContainsAny(k, " \"'.[]") {
				return nil, "", fmt.Errorf("line %d: not key = value: %q", n, line)
			}
			if table != "" {
				k = table + "." + k
			}
			if _, dup := vals[k]; dup {
				return nil, "", fmt.Errorf("line %d: key %s twice", n, k)
			}
			val, err := tomlValue(v)
			if err != nil {
				return nil, "", fmt.Errorf("line %d: %s: %v", n, k, err)
			}
			vals[k] = val
		}
	}
	return vals, comments.String(), nil
}

func tomlValue(v string) (any, error) {
	switch {
	case v == "true" || v == "false":
		return v == "true", nil
	case strings.HasPrefix(v, `"`):
		return strconv.Unquote(v)
	case strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]"):
		var list []string
		for _, item := range strings.Split(v[1:len(v)-1], ", ") {
			s, err := strconv.Unquote(item)
			if err != nil || !strings.HasPrefix(item, `"`) {
				return nil, fmt.Errorf("array item %q is not a basic string", item)
			}
			list = append(list, s)
		}
		return list, nil
	}
	return nil, fmt.Errorf("value %q is not a string, a boolean or an array of strings", v)
}

func TestProvisionPlugin(t *testing.T) {
	dir := writePlugins(t, map[string]string{
		// A plugin's file replaces the built-in's at the same path.
		"claude/provider.yaml": "extends: claude\nhome: /home/dev\nfiles: [{path: ~/.claude/skills/README.md, content: \"mine\\n\"}]\n",
		"tool/provider.yaml":   "command: [tool]\n",
	})
	p, err := Lookup("claude", dir)
	if err != nil {
		t.Fatal(err)
	}
	b := testBottle
	b.Prompt = ""
	files, err := p.Provision(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/home/dev/.claude.json 0600 provider:claude",
		"/home/dev/.claude/bb-statusline.sh 0755 provider:claude",
		"/home/dev/.claude/settings.json 0644 provider:claude",
		"/home/dev/.claude/skills/README.md 0644 plugin:claude",
	}
	if diff := cmp.Diff(want, paths(files)); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	if !strings.Contains(byPath(t, files)["/home/dev/.claude/settings.json"].Content, `"/home/dev/.claude/bb-statusline.sh"`) {
		t.Error("settings.json does not point at the status line in the plugin's home")
	}

	p, err = Lookup("tool", dir)
	if err != nil {
		t.Fatal(err)
	}
	files, err = p.Provision(testBottle)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"/home/agent/.bb/prompt.md 0644 manifest"}, paths(files)); diff != "" {
		t.Errorf("a plugin that extends nothing (-want +got):\n%s", diff)
	}
}

func TestFileMode(t *testing.T) {
	for mode, want := range map[string]os.FileMode{"0644": 0o644, "0755": 0o755} {
		if got, err := (File{Mode: mode}).FileMode(); err != nil || got != want {
			t.Errorf("FileMode(%s) = %v, %v", mode, got, err)
		}
	}
	for _, mode := range []string{"", "644", "0999", "01777"} {
		if _, err := (File{Mode: mode}).FileMode(); err == nil {
			t.Errorf("FileMode(%q): no error", mode)
		}
	}
}
