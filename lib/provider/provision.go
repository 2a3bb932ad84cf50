package provider

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
)

// File is a file provisioned in the agent's guest: bb-plan computes it,
// bb-launch writes it (owned by the agent's user) before the agent starts.
type File struct {
	// Path is absolute in the guest (a plugin writes it ~/..., the home).
	Path string `json:"path"`
	// Mode is the file's permission bits in octal, "0644" or "0755".
	Mode string `json:"mode"`
	// Content is the whole file, as text.
	Content string `json:"content"`
	// Source says who asked for it: "provider:<built-in>" for a built-in's
	// generated files, "plugin:<name>" for a plugin's files, "manifest" for
	// the agent's prompt.
	Source string `json:"source"`
	// Keep says a file the agent already has is left as it is: a CLI's
	// own state, which a resumed agent keeps (written only when absent).
	Keep bool `json:"keep,omitempty"`
}

// FileMode returns Mode as permission bits.
func (f File) FileMode() (os.FileMode, error) {
	v, err := strconv.ParseUint(f.Mode, 8, 32)
	if err != nil || !modeRE.MatchString(f.Mode) {
		return 0, fmt.Errorf("file %s: mode %q is not an octal mode like \"0644\"", f.Path, f.Mode)
	}
	return os.FileMode(v), nil
}

// Bottle is what provisioning needs to know of the bottle: who it is to a
// person (label, slug, colour), its prompt and its working folder.
type Bottle struct {
	Label string
	Slug  string
	// Color is the plan's colour (a palette name or #rrggbb) and RGB the
	// same as #rrggbb.
	Color string
	RGB   string
	// Prompt is the agent's prompt, empty for none.
	Prompt string
	// Workdir is where the workspace is mounted in the guest.
	Workdir string
	// Placeholders are the agent's placeholder variables and their values.
	Placeholders map[string]string
}

// PromptFile is where every agent with a prompt finds it, relative to its
// home. A provider with PromptArg also gets it as its command's last
// argument.
const PromptFile = ".bb/prompt.md"

// Provision returns the files the agent gets, sorted by path: the
// provisioner's generated files, the prompt, then the plugin's own files
// (which replace any of the others at the same path).
func (p *Provider) Provision(b Bottle) ([]File, error) {
	var files []File
	if gen, ok := provisioners[p.Provisioner]; ok {
		files = gen(p, b)
	}
	if b.Prompt != "" {
		files = append(files, File{Path: "~/" + PromptFile, Mode: "0644", Content: b.Prompt, Source: "manifest"})
	}
	for _, f := range p.Files {
		files = slices.DeleteFunc(files, func(o File) bool { return o.Path == f.Path })
		files = append(files, f)
	}
	for i := range files {
		if rel, ok := strings.CutPrefix(files[i].Path, "~/"); ok {
			files[i].Path = path.Join(p.Home, rel)
		}
		if _, err := files[i].FileMode(); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return files, nil
}

// provisioners generate a built-in's files. Paths start with ~/.
var provisioners = map[string]func(*Provider, Bottle) []File{
	"claude": claudeFiles,
	"codex":  codexFiles,
}

// Claude Code reads user settings from ~/.claude/settings.json (its
// "Settings" documentation). statusLine {type: command} runs a command on
// every update, gives it the session as JSON on stdin and shows the first
// line it prints, ANSI colours included ("Status line" documentation).
// Claude Code's theme is one of its own fixed palettes (dark, light, ...),
// kept in its global config rather than settings.json, and cannot take a
// colour: the bottle's colour is shown through the status line's ANSI
// colours instead. User skills are folders ~/.claude/skills/<name>/SKILL.md
// ("Agent Skills" documentation); a plugin extending claude adds its own
// with files.
const (
	claudeStatusLine = ".claude/bb-statusline.sh"
	claudeSettings   = ".claude/settings.json"
	claudeSkills     = ".claude/skills/README.md"
	claudeState      = ".claude.json"
)

func claudeFiles(p *Provider, b Bottle) []File {
	src := "provider:claude"
	type statusLine struct {
		Type    string `json:"type"`
		Command string `json:"command"`
		Padding int    `json:"padding"`
	}
	// A bottle is where bypassing permissions is meant to be done: the
	// confirmation Claude Code asks for would stop an unattended start.
	settings := struct {
		StatusLine                        statusLine `json:"statusLine"`
		SkipDangerousModePermissionPrompt bool       `json:"skipDangerousModePermissionPrompt"`
	}{statusLine{Type: "command", Command: path.Join(p.Home, claudeStatusLine)}, true}
	js, err := json.MarshalIndent(settings, "", "  ")
	if err != nil {
		panic(err) // strings and numbers always marshal
	}
	r, g, bl := rgb(b.RGB)
	script := fmt.Sprintf(`#!/bin/sh
# Claude Code's status line in bb: the bottle's label and slug in its colour
# (%s), then the model. Claude Code sends the session as JSON on stdin.
input=$(cat)
model=$(printf '%%s' "$input" | sed -n 's/.*"display_name" *: *"\([^"]*\)".*/\1/p' | head -n 1)
printf '\033[1;38;2;%d;%d;%dm● %%s\033[0m \033[2m(%%s)\033[0m' %s %s
[ -n "$model" ] && printf ' \033[2m%%s\033[0m' "$model"
printf '\n'
`, b.Color, r, g, bl, shellQuote(b.Label), shellQuote(b.Slug))
	skills := `# Skills

Claude Code loads user skills from this folder: one folder per skill holding
a SKILL.md (YAML front matter with name and description, then instructions).
bb provisions none by default. To give a bottle skills, make a plugin that
extends claude (~/.config/bot-bottle/providers/NAME/provider.yaml) and list
them under files:, e.g. {path: ~/.claude/skills/NAME/SKILL.md, file: SKILL.md}.
`
	// ~/.claude.json is Claude Code's own state (undocumented keys): the
	// first-run wizard is done, and the key it would ask about, the API
	// key's placeholder, is approved by the last 20 characters it keeps of
	// a key. Written only when absent: Claude Code keeps its state there.
	state := map[string]any{"hasCompletedOnboarding": true}
	if ph := b.Placeholders["ANTHROPIC_API_KEY"]; ph != "" {
		state["customApiKeyResponses"] = map[string][]string{"approved": {ph[max(0, len(ph)-20):]}, "rejected": {}}
	}
	sj, err := json.MarshalIndent(state, "", "  ")
	if err != nil {
		panic(err)
	}
	return []File{
		{Path: "~/" + claudeState, Mode: "0600", Content: string(sj) + "\n", Source: src, Keep: true},
		{Path: "~/" + claudeSettings, Mode: "0644", Content: string(js) + "\n", Source: src},
		{Path: "~/" + claudeStatusLine, Mode: "0755", Content: script, Source: src},
		{Path: "~/" + claudeSkills, Mode: "0644", Content: skills, Source: src},
	}
}

// Codex reads ~/.codex/config.toml ($CODEX_HOME/config.toml; its
// "Configuration" documentation and config reference). In [tui]:
// status_line and terminal_title are ordered lists of Codex's built-in
// items (no free text, so neither can carry the bottle's label); theme is
// the syntax-highlighting theme, and "ansi" draws code in the terminal's
// own palette, so bb's terminal tint shows through. Left out, as the
// reference documents no such key: a free-form title, a status line
// colour, an accent colour. projects.<path>.trust_level marks the
// workspace trusted so Codex does not ask; check_for_update_on_startup is
// off because the image, not the agent, decides the version (and the
// sidecar would deny the check).
const codexConfig = ".codex/config.toml"

func codexFiles(p *Provider, b Bottle) []File {
	var sb strings.Builder
	colour := b.Color
	if b.RGB != "" && b.RGB != b.Color {
		colour += " " + b.RGB
	}
	fmt.Fprintf(&sb, "# Written by bb for the bottle %s (slug %s, colour %s).\n", tomlString(b.Label), b.Slug, colour)
	sb.WriteString("# Codex's status line and title take only its own items: the label and the\n")
	sb.WriteString("# colour are shown by bb's terminal title and tint.\n")
	sb.WriteString("check_for_update_on_startup = false\n\n")
	sb.WriteString("[tui]\n")
	sb.WriteString(`status_line = ["model-with-reasoning", "current-dir", "git-branch", "context-used"]` + "\n")
	sb.WriteString(`terminal_title = ["project-name", "spinner", "run-state"]` + "\n")
	sb.WriteString(`theme = "ansi"` + "\n")
	if b.Workdir != "" {
		fmt.Fprintf(&sb, "\n[projects.%s]\ntrust_level = \"trusted\"\n", tomlString(b.Workdir))
	}
	return []File{{Path: "~/" + codexConfig, Mode: "0644", Content: sb.String(), Source: "provider:codex"}}
}

// rgb parses "#rrggbb"; anything else is white.
func rgb(hex string) (r, g, b int) {
	v, err := strconv.ParseUint(strings.TrimPrefix(hex, "#"), 16, 32)
	if len(hex) != 7 || hex[0] != '#' || err != nil {
		return 255, 255, 255
	}
	return int(v >> 16), int(v >> 8 & 0xff), int(v & 0xff)
}

// shellQuote quotes s for sh: the label is a person's text.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// tomlString writes s as a TOML basic string.
func tomlString(s string) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			sb.WriteByte('\\')
			sb.WriteRune(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&sb, `\u%04X`, c)
		default:
			sb.WriteRune(c)
		}
	}
	sb.WriteByte('"')
	return sb.String()
}
