package manifest

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/bb-bottles/bb/lib/routes"
	"github.com/bb-bottles/bb/lib/yamlx"
)

// Resolve returns the Manifest of one agent: the agent and its effective
// bottle, with git_user overlaid, prompt_file read and paths made absolute
// (see Manifest). An unknown name is a *yamlx.Error whose hint lists the
// agents.
func (ix *ManifestIndex) Resolve(name string) (*Manifest, error) {
	a, ok := ix.Agents[name]
	if !ok || a == nil {
		hint := "no agents are defined: add one under agents:"
		if len(ix.Agents) > 0 {
			hint = "defined agents: " + strings.Join(sortedKeys(ix.Agents), ", ")
		}
		return nil, &yamlx.Error{Pos: yamlx.Pos{File: ix.Source}, Msg: fmt.Sprintf("agent %q is not defined", name),
			Hints: []string{hint}}
	}
	b, ok := ix.Bottles[a.Bottle]
	if !ok || b == nil {
		return nil, ix.pos.Errorf("agents."+name+".bottle", "bottle %q is not defined", a.Bottle)
	}
	path := yamlx.Join("agents", name)
	bpath := yamlx.Join("bottles", a.Bottle)

	agent := *a
	agent.Name = name
	agent.Options = maps.Clone(a.Options)
	agent.GitUser = nil
	var promptFile string
	if a.PromptFile != "" {
		f := ix.abs(a.PromptFile)
		promptFile = f
		data, err := ix.readRegular(f)
		if err != nil {
			return nil, ix.pos.Errorf(yamlx.Join(path, "prompt_file"), "reading %s: %v", f, pathErr(err)).
				WithHints("a relative prompt_file is taken from " + ix.base)
		}
		agent.Prompt, agent.PromptFile = string(data), ""
	}

	bottle := *b
	bottle.Name = a.Bottle
	bottle.GitUser = overlay(ix.GitUser, b.GitUser, a.GitUser)
	bottle.Egress.Routes = cloneRoutes(b.Egress.Routes)
	if b.Tokens != nil {
		bottle.Tokens = make(map[string]TokenSource, len(b.Tokens))
		for n, t := range b.Tokens {
			if t.File != "" {
				t.File = ix.abs(t.File)
			}
			bottle.Tokens[n] = t
		}
	}
	if b.Dockerfile != "" {
		bottle.Dockerfile = ix.abs(b.Dockerfile)
		fi, err := os.Stat(bottle.Dockerfile)
		if err == nil && fi.IsDir() {
			err = fmt.Errorf("is a directory")
		}
		if err != nil {
			return nil, ix.pos.Errorf(yamlx.Join(bpath, "dockerfile"), "%s: %v", bottle.Dockerfile, pathErr(err)).
				WithHints("a relative dockerfile is taken from " + ix.base)
		}
	}
	if b.Workspace != "" {
		bottle.Workspace = ix.abs(b.Workspace)
	}

	source := ix.Source
	if f, ok := ix.files[name]; ok {
		source = f
	}
	if abs, err := filepath.Abs(source); err == nil && !ix.notPath {
		source = abs
	}
	m := &Manifest{Kind: Kind, Version: Version, Source: source, Files: []SourceFile{}, Agent: agent, Bottle: bottle}
	var from []string
	if ix.notPath {
		// stdin: the person's own pipe, no file to trust.
	} else if _, ok := ix.files[name]; ok {
		from = []string{ix.topFile, ix.files[name], ix.bottleFiles[a.Bottle]}
	} else {
		from = []string{ix.Source}
	}
	for _, f := range append(from, promptFile) {
		if f == "" {
			continue
		}
		if abs, err := filepath.Abs(f); err == nil {
			if sum, ok := ix.sums[abs]; ok {
				m.Files = append(m.Files, SourceFile{Path: abs, SHA256: sum})
			}
		}
	}
	return m, nil
}

// List returns every agent, sorted by name.
func (ix *ManifestIndex) List() []AgentSummary {
	list := make([]AgentSummary, 0, len(ix.Agents))
	for _, n := range sortedKeys(ix.Agents) {
		s := AgentSummary{Name: n}
		if a := ix.Agents[n]; a != nil {
			s.Template, s.Bottle = a.Template, a.Bottle
		}
		list = append(list, s)
	}
	return list
}

// overlay merges git users field by field, later ones winning; nil when no
// field is set.
func overlay(users ...*GitUser) *GitUser {
	var g GitUser
	for _, u := range users {
		if u == nil {
			continue
		}
		if u.Name != "" {
			g.Name = u.Name
		}
		if u.Email != "" {
			g.Email = u.Email
		}
	}
	if g == (GitUser{}) {
		return nil
	}
	return &g
}

// abs makes p absolute: ~/ is $HOME, and a relative path is taken from the
// manifest's folder.
func (ix *ManifestIndex) abs(p string) string {
	if ix.home != "" && (p == "~" || strings.HasPrefix(p, "~/")) {
		return filepath.Join(ix.home, p[1:])
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(ix.base, p)
}

func cloneRoutes(rs []routes.Route) []routes.Route {
	out := make([]routes.Route, len(rs))
	for i, r := range rs {
		out[i] = r.Clone()
	}
	return out
}

// readRegular reads a regular file only: a prompt_file of /dev/stdin or a
// fifo would hang bb-manifest.
func (ix *ManifestIndex) readRegular(f string) ([]byte, error) {
	fi, err := os.Stat(f)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file")
	}
	return ix.readFile(f)
}
