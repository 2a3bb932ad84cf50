package provider

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The built-ins' Dockerfiles live beside this code, one folder per
// built-in, so they can be read, diffed and built by hand.
//
//go:embed shell/Dockerfile claude/Dockerfile codex/Dockerfile
var dockerfiles embed.FS

// DockerfileName is the file a plugin keeps its Dockerfile in, beside its
// provider.yaml.
const DockerfileName = "Dockerfile"

// DockerfileSource says where a provider's Dockerfile is: a file on the host
// (Path, a plugin's) or a built-in's embedded one (Builtin). Reason says why
// it was chosen, for a person reading a plan.
type DockerfileSource struct {
	Path    string
	Builtin string
	Reason  string
}

// BuiltinDockerfile returns the embedded Dockerfile of the built-in name.
func BuiltinDockerfile(name string) ([]byte, error) {
	if _, ok := builtins[name]; !ok {
		return nil, fmt.Errorf("reading the Dockerfile of %q: %w %q (built-ins: %v)", name, ErrUnknown, name, Builtins())
	}
	return fs.ReadFile(dockerfiles, name+"/"+DockerfileName)
}

// DockerfileSource finds the provider's Dockerfile without reading it: a
// plugin's Dockerfile beside its provider.yaml; else that of the provider
// it extends (a plugin's, else a built-in's embedded one), else shell's (a
// plugin that only changes the command still needs an image); a built-in's
// own embedded one.
func (p *Provider) DockerfileSource() (DockerfileSource, error) {
	if p.Builtin {
		return DockerfileSource{Builtin: p.Name,
			Reason: fmt.Sprintf("the built-in provider %s's own Dockerfile", p.Name)}, nil
	}
	f := filepath.Join(p.Dir, DockerfileName)
	_, err := os.Stat(f)
	switch {
	case err == nil:
		return DockerfileSource{Path: f,
			Reason: fmt.Sprintf("the plugin %s's Dockerfile beside its provider.yaml", p.Name)}, nil
	case !errors.Is(err, fs.ErrNotExist):
		return DockerfileSource{}, fmt.Errorf("finding the Dockerfile of plugin %s: %w", p.Name, err)
	}
	switch {
	case p.parent == nil:
		return DockerfileSource{Builtin: "shell",
			Reason: fmt.Sprintf("the plugin %s has no %s: the built-in provider shell's", p.Name, f)}, nil
	case p.parent.Builtin:
		return DockerfileSource{Builtin: p.parent.Name,
			Reason: fmt.Sprintf("the plugin %s has no %s: the built-in provider %s's", p.Name, f, p.parent.Name)}, nil
	}
	src, err := p.parent.DockerfileSource()
	if err != nil {
		return src, err
	}
	src.Reason = fmt.Sprintf("the plugin %s has no %s: it extends %s, so %s", p.Name, f, p.parent.Name, src.Reason)
	return src, nil
}

// Dockerfile reads the provider's Dockerfile and says where it came from.
func (p *Provider) Dockerfile() ([]byte, DockerfileSource, error) {
	src, err := p.DockerfileSource()
	if err != nil {
		return nil, src, err
	}
	if src.Builtin != "" {
		b, err := BuiltinDockerfile(src.Builtin)
		return b, src, err
	}
	b, err := os.ReadFile(src.Path)
	if err != nil {
		return nil, src, fmt.Errorf("reading the Dockerfile of plugin %s: %w", p.Name, err)
	}
	return b, src, nil
}
