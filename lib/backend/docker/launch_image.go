package docker

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/bb-bottles/bb/lib/exit"
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
			return spec, exit.Usage(err)
		}
		spec.Dockerfile = b
	case df.Path != "":
		b, err := os.ReadFile(df.Path)
		if err != nil {
			return spec, exit.Usage(fmt.Errorf("reading the Dockerfile %s: %w", df.Path, unwrapPath(err)))
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
		return spec, exit.Usagef("plan agent.dockerfile names neither a builtin nor a path")
	}
	return spec, nil
}

// MaxContext caps a build context: past it the folder is more likely a
// home or a checkout with its data than what an image needs.
const MaxContext = 256 << 20

// contextFiles reads the regular files under dir as a build context,
// leaving out the Dockerfile itself, names the build context reserves,
// .git, and what dir's .dockerignore excludes (as docker build does: a
// token file next to the Dockerfile must not end up in a layer).
func contextFiles(dir, dockerfile string) (map[string]image.File, error) {
	ignore, err := dockerignore(dir)
	if err != nil {
		return nil, err
	}
	files := map[string]image.File{}
	var total int64
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		if rel != "." && ignore != nil {
			skip, err := ignore.MatchesOrParentMatches(rel)
			if err != nil {
				return err
			}
			if skip {
				// A folder with an exception (!pattern) below it is walked.
				if d.IsDir() && !ignore.Exclusions() {
					return filepath.SkipDir
				}
				return nil
			}
		}
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
		if total += info.Size(); total > MaxContext {
			return &contextTooBig{}
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files[rel] = image.File{Data: b, Mode: int64(info.Mode().Perm())}
		return nil
	})
	if errors.As(err, new(*contextTooBig)) {
		return nil, exit.Usage(fmt.Errorf("the build context %s is over %d MiB", dir, MaxContext>>20),
			fmt.Sprintf("list what the image does not need in %s, or give the bottle's Dockerfile a folder of its own",
				filepath.Join(dir, ".dockerignore")))
	}
	if err != nil {
		return nil, exit.Usage(fmt.Errorf("reading the build context %s: %w", dir, err))
	}
	return files, nil
}

type contextTooBig struct{}

func (*contextTooBig) Error() string { return "the build context is too big" }

// dockerignore reads dir's .dockerignore; nil when there is none.
func dockerignore(dir string) (*patternmatcher.PatternMatcher, error) {
	f, err := os.Open(filepath.Join(dir, ".dockerignore"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, exit.Usage(fmt.Errorf("reading the build context's .dockerignore: %w", err))
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err == nil {
		var pm *patternmatcher.PatternMatcher
		if pm, err = patternmatcher.New(patterns); err == nil {
			return pm, nil
		}
	}
	return nil, exit.Usage(fmt.Errorf("reading %s: %w", filepath.Join(dir, ".dockerignore"), err))
}
