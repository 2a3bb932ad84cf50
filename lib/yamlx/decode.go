package yamlx

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// MaxValues bounds the values one Decoder walks, counting every expansion of
// an alias, so that a few lines of nested aliases cannot take the process
// down.
const MaxValues = 100000

// Decoder decodes yaml.v3 nodes into Go values strictly: a struct field is
// its `yaml` tag's name and nothing else is accepted; a map has string
// keys; null leaves the zero value; scalars must have the target's type
// (an unquoted 8080 is not a string). An `any` holds what JSON can: nil,
// bool, int, float64, string, []any and map[string]any.
type Decoder struct {
	// File names the nodes' file in positions; set it before decoding
	// nodes from another file.
	File string
	// Pos records the positions of everything decoded.
	Pos *Positions

	left   int
	active map[*yaml.Node]bool
}

// NewDecoder returns a decoder of nodes parsed from file.
func NewDecoder(file string) *Decoder {
	return &Decoder{File: file, Pos: NewPositions(), left: MaxValues, active: map[*yaml.Node]bool{}}
}

// Decode decodes n into the value v points to; path is n's field path.
// A nil n (an empty document) leaves v as it is.
func (d *Decoder) Decode(n *yaml.Node, path string, v any) error {
	if n == nil {
		return nil
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("yamlx: decoding into %T, not a pointer", v)
	}
	return d.decode(n, path, rv.Elem())
}

func (d *Decoder) pos(n *yaml.Node) Pos { return Pos{d.File, n.Line, n.Column} }

func (d *Decoder) errorf(n *yaml.Node, path, format string, a ...any) *Error {
	return &Error{Pos: d.pos(n), Field: path, Msg: fmt.Sprintf(format, a...)}
}

func (d *Decoder) decode(n *yaml.Node, path string, v reflect.Value) error {
	if _, ok := d.Pos.val[path]; !ok {
		d.Pos.val[path] = d.pos(n)
	}
	d.left--
	if d.left < 0 {
		return d.errorf(n, path, "too many values (more than %d, counting every use of an alias)", MaxValues)
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil || d.active[n.Alias] {
			return d.errorf(n, path, "alias *%s refers to itself", n.Value)
		}
		d.active[n.Alias] = true
		defer delete(d.active, n.Alias)
		return d.decode(n.Alias, path, v)
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		v.Set(reflect.Zero(v.Type()))
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		if err := d.decode(n, path, p.Elem()); err != nil {
			return err
		}
		v.Set(p)
		return nil
	case reflect.Struct:
		return d.decodeStruct(n, path, v)
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			return fmt.Errorf("yamlx: map key type %s is not a string", v.Type().Key())
		}
		if err := d.want(n, path, yaml.MappingNode); err != nil {
			return err
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		err := d.pairs(n, path, func(key string, _ *yaml.Node, val *yaml.Node) error {
			e := reflect.New(v.Type().Elem()).Elem()
			if err := d.decode(val, Join(path, key), e); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(key).Convert(v.Type().Key()), e)
			return nil
		})
		if err != nil {
			return err
		}
		v.Set(m)
		return nil
	case reflect.Slice:
		if err := d.want(n, path, yaml.SequenceNode); err != nil {
			return err
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := d.decode(item, Index(path, i), s.Index(i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.Interface:
		if v.NumMethod() != 0 {
			return fmt.Errorf("yamlx: cannot decode into %s", v.Type())
		}
		return d.decodeAny(n, path, v)
	}
	return d.decodeScalar(n, path, v)
}

func (d *Decoder) decodeStruct(n *yaml.Node, path string, v reflect.Value) error {
	if err := d.want(n, path, yaml.MappingNode); err != nil {
		return err
	}
	fields := map[string]int{}
	var names []string
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = i
		names = append(names, name)
	}
	return d.pairs(n, path, func(key string, k, val *yaml.Node) error {
		i, ok := fields[key]
		if !ok {
			sort.Strings(names)
			return d.errorf(k, Join(path, key), "unknown field %q", key).
				WithHints("the fields allowed here are: " + strings.Join(names, ", "))
		}
		return d.decode(val, Join(path, key), v.Field(i))
	})
}

// pairs calls f for each key and value of the mapping n, refusing keys that
// are not scalars, merge keys and duplicates.
func (d *Decoder) pairs(n *yaml.Node, path string, f func(key string, k, val *yaml.Node) error) error {
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return d.errorf(k, path, "a key must be a plain name, not %s", describe(k))
		}
		if k.ShortTag() == "!!merge" {
			return d.errorf(k, path, "merge keys (<<) are not supported").
				WithHints("repeat the fields, or reuse a whole value with an anchor (&name) and an alias (*name)")
		}
		fp := Join(path, k.Value)
		if first, ok := seen[k.Value]; ok {
			return d.errorf(k, fp, "duplicate key %q (first at line %d)", k.Value, first.Line)
		}
		seen[k.Value] = k
		d.Pos.key[fp] = d.pos(k)
		if err := f(k.Value, k, val); err != nil {
			return err
		}
	}
	return nil
}

func (d *Decoder) decodeAny(n *yaml.Node, path string, v reflect.Value) error {
	switch n.Kind {
	case yaml.SequenceNode:
		s := make([]any, len(n.Content))
		for i, item := range n.Content {
			if err := d.decode(item, Index(path, i), reflect.ValueOf(&s[i]).Elem()); err != nil {
				return err
			}
		}
		v.Set(reflect.ValueOf(s))
		return nil
	case yaml.MappingNode:
		m := map[string]any{}
		err := d.pairs(n, path, func(key string, _, val *yaml.Node) error {
			var e any
			if err := d.decode(val, Join(path, key), reflect.ValueOf(&e).Elem()); err != nil {
				return err
			}
			m[key] = e
			return nil
		})
		if err != nil {
			return err
		}
		v.Set(reflect.ValueOf(m))
		return nil
	case yaml.ScalarNode:
		var x any
		switch n.ShortTag() {
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				return d.errorf(n, path, "%q is not a boolean", n.Value)
			}
			x = b
		case "!!int":
			var i int
			if err := n.Decode(&i); err != nil {
				return d.errorf(n, path, "%q is not an integer this program can hold", n.Value)
			}
			x = i
		case "!!float":
			var f float64
			if err := n.Decode(&f); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
				return d.errorf(n, path, "%q is not a finite number", n.Value)
			}
			x = f
		default:
			x = n.Value
		}
		v.Set(reflect.ValueOf(&x).Elem())
		return nil
	}
	return d.errorf(n, path, "cannot be %s", describe(n))
}

func (d *Decoder) decodeScalar(n *yaml.Node, path string, v reflect.Value) error {
	tag := n.ShortTag()
	switch v.Kind() {
	case reflect.String:
		if n.Kind != yaml.ScalarNode || tag != "!!str" {
			e := d.errorf(n, path, "must be a string, not %s", describe(n))
			if n.Kind == yaml.ScalarNode {
				e.WithHints(fmt.Sprintf("put it in quotes to make it a string: %q", n.Value))
			}
			return e
		}
		v.SetString(n.Value)
		return nil
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || tag != "!!bool" {
			return d.errorf(n, path, "must be true or false, not %s", describe(n))
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			return d.errorf(n, path, "%q is not true or false", n.Value)
		}
		v.SetBool(b)
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.Kind != yaml.ScalarNode || tag != "!!int" {
			return d.errorf(n, path, "must be an integer, not %s", describe(n))
		}
		var i int64
		if err := n.Decode(&i); err != nil || v.OverflowInt(i) {
			return d.errorf(n, path, "%s is out of range", n.Value)
		}
		v.SetInt(i)
		return nil
	case reflect.Float32, reflect.Float64:
		if n.Kind != yaml.ScalarNode || (tag != "!!float" && tag != "!!int") {
			return d.errorf(n, path, "must be a number, not %s", describe(n))
		}
		var f float64
		if err := n.Decode(&f); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return d.errorf(n, path, "%q is not a finite number", n.Value)
		}
		v.SetFloat(f)
		return nil
	}
	return fmt.Errorf("yamlx: cannot decode into %s", v.Type())
}

// want checks that n is of kind k.
func (d *Decoder) want(n *yaml.Node, path string, k yaml.Kind) error {
	if n.Kind == k {
		return nil
	}
	what := "a mapping"
	if k == yaml.SequenceNode {
		what = "a list"
	}
	return d.errorf(n, path, "must be %s, not %s", what, describe(n))
}

// describe names what a node is, for "must be X, not Y".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return "an alias"
	}
	switch t := n.ShortTag(); t {
	case "!!str":
		return "a string"
	case "!!int":
		return "an integer (" + n.Value + ")"
	case "!!float":
		return "a number (" + n.Value + ")"
	case "!!bool":
		return "a boolean (" + n.Value + ")"
	case "!!null":
		return "null"
	case "!!timestamp":
		return "a timestamp (" + n.Value + ")"
	default:
		return "a value tagged " + strconv.Quote(t)
	}
}
