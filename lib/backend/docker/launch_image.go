package docker

import (
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"

	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/image"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/provider"
)

// LabelTemplate on an agent image names the template it was built for.
const LabelTemplate = "bb.template"

// AgentSpec is the agent image a plan asks for: the provider's embedded
// Dockerfile with an empty context, or a bottle's or plugin's Dockerfile with
// its folder as the context. base, when set, is the BASE build argument;
// args are added over the plan's.
func AgentSpec(p *plan.Plan, base string, args map[string]string) (AgentImageSpec, error) {
	df := p.Agent.Dockerfile
	spec := AgentImageSpec{
		Repo:      p.Agent.Image,
		BuildArgs: maps.Clone(p.Agent.BuildArgs),
		Labels:    map[string]string{LabelTemplate: p.Agent.Template},
	}
	if spec.BuildArgs == nil {
		spec.BuildArgs = map[string]string{}
	}
	if base != "" {
		spec.BuildArgs["BASE"] = base
	}
	maps.Copy(spec.BuildArgs, args)
	switch {
	case df.Builtin != "":
		b, err := provider.BuiltinDockerfile(df.Builtin)
		if err != nil {
			return spec, cli.Usage(err)
		}
		spec.Dockerfile = b
	case df.Path != "":
		b, err := os.ReadFile(df.Path)
		if err != nil {
			return spec, cli.Usage(fmt.Errorf("reading the Dockerfile %s: %w", df.Path, unwrapPathErr(err)))
		}
		spec.Dockerfile = b
		ctxDir := df.Context
		if ctxDir == "" {
			ctxDir = filepath.Dir(df.Path)
		}
		if spec.Files, err = contextFiles(ctxDir, df.Path); err != nil {
			return spec, err
		}
	default:
		return spec, cli.Usagef("plan agent.dockerfile names neither a builtin nor a path")
	}
	return spec, nil
}

// contextFiles reads the regular files under dir as a build context,
// leaving out the Dockerfile itself, names the build context reserves, and
// .git.
func contextFiles(dir, dockerfile string) (map[string]image.File, error) {
	files := map[string]image.File{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || path == dockerfile || rel == image.DockerfileName || rel == ".dockerignore" {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files[rel] = image.File{Data: b, Mode: int64(info.Mode().Perm())}
		return nil
	})
	if err != nil {
		return nil, cli.Usage(fmt.Errorf("reading the build context %s: %w", dir, err))
	}
	return files, nil
}
