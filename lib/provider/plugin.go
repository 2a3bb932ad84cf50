package provider

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/bb-bottles/bb/lib/routes"
	"github.com/bb-bottles/bb/lib/yamlx"
)

// pluginYAML is the schema of provider.yaml. Every field is optional; a
// plugin that extends nothing and names no command runs its image's CMD.
//
//	extends: claude          # a built-in or another plugin: inherit, then override
//	home: /home/agent        # the guest home (absolute)
//	user: agent              # the user the agent runs as (never root)
//	command: [my-agent, --yes]
//	env: {EDITOR: vi}        # merged over the inherited env
//	routes: [...]            # lib/routes schema; a host named here replaces
//	                         # the inherited route for it
//	tokens: {NAME: {env: HOST_VARIABLE}}
//	placeholders: {AGENT_VARIABLE: TOKEN_NAME}
//	files:                   # provisioned in the guest home
//	  - {path: ~/.config/tool/config.toml, content: "..."}
//	  - {path: ~/bin/hello, file: hello.sh, mode: "0755"}  # file: beside provider.yaml
//	options: [fast]          # options the plugin accepts (never a reserved one)
//	prompt_arg: true         # the command takes the prompt as its last argument
type pluginYAML struct {
	Extends      string                 `yaml:"extends"`
	Home         string                 `yaml:"home"`
	User         string                 `yaml:"user"`
	Command      []string               `yaml:"command"`
	Env          map[string]string      `yaml:"env"`
	Routes       []routes.Route         `yaml:"routes"`
	Tokens       map[string]pluginToken `yaml:"tokens"`
	Placeholders map[string]string      `yaml:"placeholders"`
	Files        []pluginFile           `yaml:"files"`
	Options      []string               `yaml:"options"`
	PromptArg    *bool                  `yaml:"prompt_arg"`
}

type pluginToken struct {
	Env string `yaml:"env"`
}

type pluginFile struct {
	Path    string  `yaml:"path"`
	Content *string `yaml:"content"`
	File    string  `yaml:"file"`
	Mode    string  `yaml:"mode"`
}

// MaxFileSize bounds a provisioned file's content.
const MaxFileSize = 1 << 20

var (
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)
	envRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	userRE   = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	optionRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	modeRE   = regexp.MustCompile(`^0[0-7]{3}$`)
)

// validName reports whether name can be a plugin's folder: a template name
// as the manifest allows it, so a name cannot climb out of the plugin folder.
func validName(name string) bool { return nameRE.MatchString(name) }

// loadPlugin reads the plugin name's provider.yaml (file), resolving what it
// extends through pluginDir; chain is the extends being followed.
func loadPlugin(name, file, pluginDir string, chain []string) (*Provider, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading plugin %s: %w", file, err)
	}
	root, err := yamlx.Parse(data, file)
	if err != nil {
		return nil, err
	}
	d := yamlx.NewDecoder(file)
	var y pluginYAML
	if err := d.Decode(root, "", &y); err != nil {
		return nil, err
	}
	pos := d.Pos
	chain = append(chain, name)

	var p *Provider
	switch {
	case y.Extends == "":
		// No command: the image's own (its Dockerfile's CMD).
		p = &Provider{Home: "/home/agent", User: "agent"}
	case y.Extends == name:
		// A plugin that extends its own name builds on the built-in it
		// overrides.
		if p, err = builtin(name); err != nil {
			return nil, pos.Errorf("extends", "%q extends itself, and there is no built-in %s to build on", name, name).
				WithHints("built-in templates: " + strings.Join(Builtins(), ", "))
		}
	case slices.Contains(chain, y.Extends):
		return nil, pos.Errorf("extends", "extends cycle: %s -> %s", strings.Join(chain, " -> "), y.Extends).
			WithHints("a plugin may extend a built-in or another plugin, but never come back to itself")
	default:
		p, err = lookup(y.Extends, pluginDir, chain)
		if err != nil {
			if e, ok := err.(*yamlx.Error); ok {
				return nil, e
			}
			if !errors.Is(err, ErrUnknown) {
				return nil, pos.Errorf("extends", "%v", err)
			}
			h := "built-in templates: " + strings.Join(Builtins(), ", ")
			if pluginDir != "" {
				h += "; a plugin NAME is " + filepath.Join(pluginDir, "NAME", PluginFile)
			}
			return nil, pos.Errorf("extends", "extends %q, which is neither a plugin nor a built-in", y.Extends).WithHints(h)
		}
	}
	if y.Extends != "" {
		parent := *p
		p.parent = &parent
	}
	p.Name, p.Builtin, p.Dir, p.Extends = name, false, filepath.Dir(file), y.Extends
	// Options reserved to built-ins are not inherited: a plugin can never
	// reach into the host or widen egress on its own.
	p.Options = slices.DeleteFunc(slices.Clone(p.Options), IsReserved)
	if err := applyPlugin(p, &y, pos); err != nil {
		return nil, err
	}
	return p, nil
}

// applyPlugin checks y and lays it over p, the inherited provider.
func applyPlugin(p *Provider, y *pluginYAML, pos *yamlx.Positions) error {
	if y.Home != "" {
		if !path.IsAbs(y.Home) || path.Clean(y.Home) != y.Home || y.Home == "/" {
			return pos.Errorf("home", "%q is not a clean absolute folder", y.Home)
		}
		p.Home = y.Home
	}
	if y.User != "" {
		switch {
		case y.User == "root":
			return pos.Errorf("user", "the agent never runs as root").
				WithHints("name the non-root user the plugin's Dockerfile creates")
		case !userRE.MatchString(y.User):
			return pos.Errorf("user", "%q is not a user name", y.User)
		}
		p.User = y.User
	}
	if y.Command != nil {
		if len(y.Command) == 0 {
			return pos.Errorf("command", "is empty").WithHints("command: [PROGRAM, ARGS...]")
		}
		for i, a := range y.Command {
			if a == "" || strings.ContainsRune(a, 0) {
				return pos.Errorf(yamlx.Index("command", i), "is empty or holds a NUL")
			}
		}
		p.Command = slices.Clone(y.Command)
	}
	if y.PromptArg != nil {
		p.PromptArg = *y.PromptArg
	}

	env := maps.Clone(p.Env)
	for _, k := range sortedKeys(y.Env) {
		if !envRE.MatchString(k) {
			return pos.KeyErrorf(yamlx.Join("env", k), "%q is not an environment variable name", k)
		}
		if strings.ContainsRune(y.Env[k], 0) {
			return pos.Errorf(yamlx.Join("env", k), "holds a NUL")
		}
		if env == nil {
			env = map[string]string{}
		}
		env[k] = y.Env[k]
	}
	p.Env = env

	tokens := slices.Clone(p.Tokens)
	for _, n := range sortedKeys(y.Tokens) {
		tp := yamlx.Join("tokens", n)
		t := y.Tokens[n]
		switch {
		case n == "CANARY":
			return pos.KeyErrorf(tp, "token name CANARY is reserved for the canary bb plants itself")
		case !routes.ValidTokenName(n):
			return pos.KeyErrorf(tp, "%q is not a token NAME (upper case letters, digits and _, starting with a letter)", n)
		case routes.CheckEnvName(t.Env) != nil:
			return pos.Errorf(yamlx.Join(tp, "env"), "%v", routes.CheckEnvName(t.Env)).
				WithHints(n + ": {env: VARIABLE} names the host variable that usually holds the token")
		}
		tokens = slices.DeleteFunc(tokens, func(o Token) bool { return o.Name == n })
		tokens = append(tokens, Token{Name: n, Env: t.Env})
	}
	slices.SortFunc(tokens, func(a, b Token) int { return strings.Compare(a.Name, b.Name) })
	p.Tokens = tokens
	declared := func(tok string) bool {
		return slices.ContainsFunc(p.Tokens, func(t Token) bool { return t.Name == tok })
	}

	if y.Routes != nil {
		if err := routes.ValidateAt(y.Routes, "routes", pos); err != nil {
			return err
		}
		rs := slices.Clone(y.Routes)
		for i, r := range rs {
			if r.Inject != nil && !declared(r.Inject.Token) {
				return pos.Errorf(fmt.Sprintf("routes[%d].inject.token", i), "token %q is not declared in tokens", r.Inject.Token).
					WithHints(fmt.Sprintf("declare it: tokens: {%s: {env: VARIABLE}}", r.Inject.Token))
			}
		}
		// The plugin decides about every host it names; the inherited
		// routes keep the others.
		for _, r := range p.Routes {
			if !slices.ContainsFunc(y.Routes, func(o routes.Route) bool { return o.Host == r.Host }) {
				rs = append(rs, r)
			}
		}
		p.Routes = rs
	}

	ph := maps.Clone(p.Placeholders)
	for _, k := range sortedKeys(y.Placeholders) {
		fp := yamlx.Join("placeholders", k)
		if !envRE.MatchString(k) {
			return pos.KeyErrorf(fp, "%q is not an environment variable name", k)
		}
		if !declared(y.Placeholders[k]) {
			return pos.Errorf(fp, "token %q is not declared in tokens", y.Placeholders[k])
		}
		if ph == nil {
			ph = map[string]string{}
		}
		ph[k] = y.Placeholders[k]
	}
	p.Placeholders = ph

	// A reserved option may be listed, but is refused wherever an agent of
	// a plugin takes it (manifest validation, bb-plan).
	for i, o := range y.Options {
		if !optionRE.MatchString(o) {
			return pos.Errorf(yamlx.Index("options", i), "%q is not an option name (lower case letters, digits and _)", o)
		}
		if !slices.Contains(p.Options, o) {
			p.Options = append(p.Options, o)
		}
	}

	files := slices.Clone(p.Files)
	for i, f := range y.Files {
		nf, err := pluginFileOf(p, f, yamlx.Index("files", i), pos)
		if err != nil {
			return err
		}
		files = slices.DeleteFunc(files, func(o File) bool { return o.Path == nf.Path })
		files = append(files, nf)
	}
	p.Files = files
	return nil
}

// pluginFileOf checks one entry of files and reads its content.
func pluginFileOf(p *Provider, f pluginFile, fp string, pos *yamlx.Positions) (File, error) {
	rel, ok := strings.CutPrefix(f.Path, "~/")
	if !ok || rel == "" || path.Clean(rel) != rel || rel == ".." || strings.HasPrefix(rel, "../") {
		return File{}, pos.Errorf(yamlx.Join(fp, "path"), "%q is not a clean path in the home (~/...)", f.Path).
			WithHints("files are provisioned in the agent's home: path: ~/.config/tool/config")
	}
	mode := f.Mode
	if mode == "" {
		mode = "0644"
	} else if !modeRE.MatchString(mode) {
		return File{}, pos.Errorf(yamlx.Join(fp, "mode"), "%q is not an octal mode like \"0644\" or \"0755\"", mode)
	}
	var content string
	switch {
	case (f.Content == nil) == (f.File == ""):
		return File{}, pos.Errorf(fp, "want exactly one of content and file").
			WithHints("content: TEXT is the file itself; file: NAME is a file beside provider.yaml")
	case f.Content != nil:
		content = *f.Content
	default:
		name := f.File
		if filepath.IsAbs(name) || !filepath.IsLocal(name) {
			return File{}, pos.Errorf(yamlx.Join(fp, "file"), "%q is not a file beside provider.yaml", name)
		}
		src := filepath.Join(p.Dir, name)
		b, err := readInDir(p.Dir, name)
		if err != nil {
			return File{}, pos.Errorf(yamlx.Join(fp, "file"), "reading %s: %v", src, unwrapPath(err))
		}
		content = string(b)
	}
	if len(content) > MaxFileSize {
		return File{}, pos.Errorf(fp, "content is larger than %d bytes", MaxFileSize)
	}
	if !utf8.ValidString(content) || strings.ContainsRune(content, 0) {
		return File{}, pos.Errorf(fp, "content is not text (UTF-8 without NUL)").
			WithHints("a plan carries files as JSON text; build binary files into the image with a Dockerfile")
	}
	return File{Path: f.Path, Mode: mode, Content: content, Source: "plugin:" + p.Name}, nil
}

// unwrapPath drops the path an *os.PathError repeats.
func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// readInDir reads name inside dir, never outside it: the name is checked as
// text above, and os.OpenInRoot also refuses a symlink that leads out (a
// plugin cloned from a repository could link notes.txt to a host token
// file, whose value would then travel in the plan and into the agent).
func readInDir(dir, name string) ([]byte, error) {
	f, err := os.OpenInRoot(dir, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file")
	}
	if fi.Size() > MaxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", MaxFileSize)
	}
	return io.ReadAll(io.LimitReader(f, MaxFileSize+1))
}
