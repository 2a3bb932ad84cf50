package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/bb-bottles/bb/lib/yamlx"
	"gopkg.in/yaml.v3"
)

// DefaultFile is the manifest read when neither --file nor $BB_MANIFEST
// names one.
const DefaultFile = "bb.yaml"

// DirIndexFile is the file of a manifest directory that holds the
// top-level settings; it is never a bottle.
const DirIndexFile = "bb.yaml"

// Path returns the manifest to read: flag if set, else $BB_MANIFEST, else
// DefaultFile.
func Path(flag string, env func(string) string) string {
	if flag != "" {
		return flag
	}
	if p := env("BB_MANIFEST"); p != "" {
		return p
	}
	return DefaultFile
}

// Load reads and validates the manifest index at path, a YAML file or a
// directory (see the package documentation). env supplies HOME (for ~/
// paths) and XDG_CONFIG_HOME (for plugin templates). Every error about the
// manifest's content is a *yamlx.Error naming file, line, column and field;
// when there are several, the first in file order is returned.
func Load(path string, env func(string) string) (*ManifestIndex, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", path, pathErr(err))
	}
	base := path
	if !fi.IsDir() {
		base = filepath.Dir(path)
	}
	if base, err = filepath.Abs(base); err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", path, err)
	}
	ix := &ManifestIndex{Source: path, base: base, home: env("HOME"), files: map[string]string{},
		sums: map[string]string{}, bottleFiles: map[string]string{}}
	if fi.IsDir() {
		err = ix.loadDir(path)
	} else {
		err = ix.loadFile(path)
	}
	if err != nil {
		return nil, err
	}
	if err := ix.validate(env); err != nil {
		return nil, err
	}
	return ix, nil
}

// LoadBytes is Load of one YAML file's content, already read (stdin): file
// names it in errors and as Source, and relative paths are taken from the
// current folder.
func LoadBytes(data []byte, file string, env func(string) string) (*ManifestIndex, error) {
	base, err := filepath.Abs(".")
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", file, err)
	}
	ix := &ManifestIndex{Source: file, base: base, home: env("HOME"), files: map[string]string{}, notPath: true,
		sums: map[string]string{}, bottleFiles: map[string]string{}}
	if err := ix.loadData(data, file); err != nil {
		return nil, err
	}
	if err := ix.validate(env); err != nil {
		return nil, err
	}
	return ix, nil
}

func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// loadFile reads a whole index from one YAML file.
func (ix *ManifestIndex) loadFile(file string) error {
	data, err := ix.readFile(file)
	if err != nil {
		return fmt.Errorf("reading manifest %s: %w", file, pathErr(err))
	}
	return ix.loadData(data, file)
}

// readFile reads a file of the manifest and remembers what it read.
func (ix *ManifestIndex) readFile(file string) ([]byte, error) {
	data, err := os.ReadFile(file)
	if err == nil && ix.sums != nil {
		if abs, aerr := filepath.Abs(file); aerr == nil {
			ix.sums[abs] = sha256Hex(data)
		}
	}
	return data, err
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func (ix *ManifestIndex) loadData(data []byte, file string) error {
	root, err := yamlx.Parse(data, file)
	if err != nil {
		return err
	}
	d := yamlx.NewDecoder(file)
	ix.pos = d.Pos
	return d.Decode(root, "", ix)
}

// loadDir reads a manifest directory: bb.yaml (optional) for the top-level
// settings, NAME.md for each agent and NAME.yaml for each bottle.
func (ix *ManifestIndex) loadDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("reading manifest %s: %w", dir, pathErr(err))
	}
	d := yamlx.NewDecoder(dir)
	ix.pos = d.Pos
	top := filepath.Join(dir, DirIndexFile)
	if data, err := ix.readFile(top); err == nil {
		ix.topFile = top
		root, err := yamlx.Parse(data, top)
		if err != nil {
			return err
		}
		d.File = top
		if err := d.Decode(root, "", ix); err != nil {
			return err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading manifest %s: %w", top, pathErr(err))
	}
	if ix.Bottles == nil {
		ix.Bottles = map[string]*Bottle{}
	}
	if ix.Agents == nil {
		ix.Agents = map[string]*Agent{}
	}
	for _, e := range entries { // ReadDir sorts by name
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || name == DirIndexFile {
			continue
		}
		file := filepath.Join(dir, name)
		switch {
		case strings.EqualFold(name, "README.md"):
		case strings.HasSuffix(name, ".md"):
			a := new(Agent)
			n := strings.TrimSuffix(name, ".md")
			if err := ix.loadPart(d, file, "agents", n, a, ix.Agents[n] != nil); err != nil {
				return err
			}
			ix.Agents[n], ix.files[n] = a, file
		case strings.HasSuffix(name, ".yaml"):
			b := new(Bottle)
			n := strings.TrimSuffix(name, ".yaml")
			if err := ix.loadPart(d, file, "bottles", n, b, ix.Bottles[n] != nil); err != nil {
				return err
			}
			ix.Bottles[n], ix.bottleFiles[n] = b, file
		}
	}
	return nil
}

// loadPart decodes one agent (NAME.md) or bottle (NAME.yaml) of a manifest
// directory into v.
func (ix *ManifestIndex) loadPart(d *yamlx.Decoder, file, kind, name string, v any, dup bool) error {
	path := yamlx.Join(kind, name)
	if dup {
		return &yamlx.Error{Pos: yamlx.Pos{File: file, Line: 1, Column: 1}, Field: path,
			Msg: fmt.Sprintf("%s %q is also defined at %s", strings.TrimSuffix(kind, "s"), name, ix.pos.Key(path))}
	}
	data, err := ix.readFile(file)
	if err != nil {
		return fmt.Errorf("reading manifest %s: %w", file, pathErr(err))
	}
	var body string
	bodyLine := 0
	if kind == "agents" {
		if data, body, bodyLine, err = frontMatter(data, file); err != nil {
			return err
		}
	}
	root, err := yamlx.Parse(data, file)
	if err != nil {
		return err
	}
	d.File = file
	d.Pos.SetKey(path, yamlx.Pos{File: file, Line: 1, Column: 1})
	if root == nil {
		root = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: 1, Column: 1}
	}
	if err := d.Decode(root, path, v); err != nil {
		var ye *yamlx.Error
		if errors.As(err, &ye) && strings.HasPrefix(ye.Msg, "unknown field") && yamlx.Parent(ye.Field) == path {
			ye.WithHints(fmt.Sprintf("in a manifest directory, NAME.md is one agent and NAME.yaml one bottle; "+
				"version and git_user for all go in %s", DirIndexFile))
		}
		return err
	}
	if a, ok := v.(*Agent); ok && body != "" {
		if a.Prompt != "" || a.PromptFile != "" {
			field := yamlx.Join(path, "prompt")
			if a.PromptFile != "" {
				field = yamlx.Join(path, "prompt_file")
			}
			return d.Pos.Errorf(field, "is set, and the file has a body (the prompt) too").
				WithHints("keep one: the body below the front matter, or this field")
		}
		a.Prompt = body
		d.Pos.SetKey(yamlx.Join(path, "prompt"), yamlx.Pos{File: file, Line: bodyLine, Column: 1})
	}
	return nil
}

// frontMatter splits an agent file into its YAML front matter, between
// "---" lines, and its body (the prompt, trimmed of surrounding blank
// space). The YAML keeps its line numbers: the opening "---" becomes an
// empty line.
func frontMatter(data []byte, file string) (yml []byte, body string, bodyLine int, err error) {
	lines := bytes.SplitAfter(data, []byte("\n"))
	isFence := func(l []byte) bool { return string(bytes.TrimRight(l, " \t\r\n")) == "---" }
	if len(lines) == 0 || !isFence(bytes.TrimPrefix(lines[0], []byte("\ufeff"))) {
		return nil, "", 0, &yamlx.Error{Pos: yamlx.Pos{File: file, Line: 1, Column: 1},
			Msg:   "an agent file must start with YAML front matter between --- lines",
			Hints: []string{"start it with a line ---, then template: and bottle:, then another line ---; the prompt follows"}}
	}
	for i := 1; i < len(lines); i++ {
		if isFence(lines[i]) {
			yml = append([]byte("\n"), bytes.Join(lines[1:i], nil)...)
			rest := bytes.Join(lines[i+1:], nil)
			trimmed := bytes.TrimLeft(rest, " \t\r\n")
			bodyLine = i + 2 + bytes.Count(rest[:len(rest)-len(trimmed)], []byte("\n"))
			return yml, string(bytes.TrimSpace(rest)), bodyLine, nil
		}
	}
	return nil, "", 0, &yamlx.Error{Pos: yamlx.Pos{File: file, Line: 1, Column: 1},
		Msg: "the front matter has no closing --- line"}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
