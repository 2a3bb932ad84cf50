package yamlx

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDecodeAny(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       any
		err        string
	}{
		{"json values", "{a: 1, b: [x, 2.5, true, ~], c: {d: \"e\"}, t: 2024-01-02}",
			map[string]any{"a": 1, "b": []any{"x", 2.5, true, nil}, "c": map[string]any{"d": "e"}, "t": "2024-01-02"}, ""},
		{"alias", "{a: &x [1], b: *x}", map[string]any{"a": []any{1}, "b": []any{1}}, ""},
		{"infinity", "{a: .inf}", nil, `f.yaml:1:5: a: ".inf" is not a finite number`},
		{"key that is a list", "{[a]: 1}", nil, `f.yaml:1:2: a key must be a plain name, not a list`},
		{"duplicate", "a: 1\nb: 2\na: 3\n", nil, `f.yaml:3:1: a: duplicate key "a" (first at line 1)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Parse([]byte(tt.yaml), "f.yaml")
			if err != nil {
				t.Fatal(err)
			}
			var got any
			err = NewDecoder("f.yaml").Decode(n, "", &got)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("Decode error = %v, want %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Decode (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPositions(t *testing.T) {
	n, err := Parse([]byte("a:\n  b:\n    c: 1\n  list: [x, y]\n"), "f.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := NewDecoder("f.yaml")
	var v map[string]map[string]any
	if err := d.Decode(n, "", &v); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		at   string
	}{
		{"a.b.c", "f.yaml:3:8"},       // the value
		{"a.list[1]", "f.yaml:4:13"},  // a list item
		{"a.b.missing", "f.yaml:2:3"}, // absent: its parent's key
		{"a.nope.deeper", "f.yaml:1:1"},
	}
	for _, tt := range tests {
		if got := d.Pos.At(tt.path).String(); got != tt.at {
			t.Errorf("At(%q) = %s, want %s", tt.path, got, tt.at)
		}
	}
}

// A syntax error names the line and column where the trouble is, not where
// the mapping in trouble began (yaml.v3's own line).
func TestSyntaxErrorPosition(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"agents:\n  a:\n    template: shell\n   bottle: x\n", "f.yaml:4:4: YAML syntax error: did not find expected key"},
		{"agents:\n  a: {template: shell\nbottles: {}\n", "f.yaml:2:3: YAML syntax error: did not find expected ',' or '}'"},
		{"a: 1\nb: 2\n\tc: 3\n", "f.yaml:3:1: YAML syntax error: found a tab character that violates indentation"},
		{"a: b: c\n", "f.yaml:1:1: YAML syntax error: mapping values are not allowed in this context"},
	} {
		_, err := Parse([]byte(tc.in), "f.yaml")
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q: got %v, want %s", tc.in, err, tc.want)
		}
	}
}
