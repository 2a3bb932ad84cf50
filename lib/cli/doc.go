package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Kinds of JSON the commands pass on, what makes each, and what reads it.
var kinds = map[string]struct{ from, to string }{
	"bb.manifest": {"bb-manifest AGENT", "bb-plan"},
	"bb.plan":     {"bb-plan", "bb-launch"},
}

// pipeline is the commands' order, for a hint.
const pipeline = "bb-manifest AGENT | bb-plan | bb-launch"

// maxDoc bounds what a command reads of another's output.
const maxDoc = 64 << 20

// DecodeDoc decodes one JSON document of kind want ("bb.plan") from r
// into v, strictly (unknown fields and trailing data refused; label names
// the input). What is not one is named, with what to do instead: no input,
// text that is no JSON, another command's output (a bb.manifest where a
// bb.plan is wanted names the command between them), a launch record.
func DecodeDoc(r io.Reader, label, want string, v any) error {
	data, err := io.ReadAll(io.LimitReader(r, maxDoc+1))
	if err != nil {
		return Usage(fmt.Errorf("reading %s: %w", label, err))
	}
	if len(data) > maxDoc {
		return Usage(fmt.Errorf("reading %s: more than %d bytes: no %s is that large", label, maxDoc, want))
	}
	hint := fmt.Sprintf("%s reads what %s prints: %s", kinds[want].to, kinds[want].from, pipeline)
	trimmed := bytes.TrimSpace(data)
	switch {
	case len(trimmed) == 0:
		return Usage(fmt.Errorf("reading %s: empty input, want a %s", label, want), hint)
	case trimmed[0] == '[':
		return Usage(fmt.Errorf("reading %s: a JSON list, want a %s (an object)", label, want), hint)
	case trimmed[0] != '{' || !json.Valid(trimmed):
		if json.Valid(trimmed) || trimmed[0] != '{' {
			return Usage(fmt.Errorf("reading %s: this is not a %s but text starting %q", label, want, start(trimmed)), hint)
		}
	}
	var head struct {
		Kind           *string `json:"kind"`
		Slug           *string `json:"slug"`
		AgentContainer *string `json:"agent_container"`
	}
	if err := json.Unmarshal(trimmed, &head); err == nil {
		switch {
		case head.Kind == nil && head.Slug != nil && head.AgentContainer != nil:
			return Usage(fmt.Errorf("reading %s: this is bb-launch's launch record, not a %s", label, want),
				"a running bottle is reached by its slug: bb-launch exec|attach|stop SLUG")
		case head.Kind == nil:
			return Usage(fmt.Errorf("reading %s: a JSON object without \"kind\", not a %s", label, want), hint)
		case *head.Kind != want:
			got := *head.Kind
			if k, ok := kinds[got]; ok {
				next := fmt.Sprintf("pipe it through %s: %s", k.to, pipeline)
				if kinds[want].to == k.from {
					next = fmt.Sprintf("it is further along: give it to %s", k.to)
				}
				return Usage(fmt.Errorf("reading %s: this is a %s (what %s prints), not a %s", label, got, k.from, want), next)
			}
			return Usage(fmt.Errorf("reading %s: kind is %q, want %q", label, got, want), hint)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Usage(fmt.Errorf("reading %s: the %s is cut short", label, want), hint)
		}
		if errors.As(err, &se) {
			return Usage(fmt.Errorf("reading %s: the %s is not whole JSON (%v, at byte %d)", label, want, err, se.Offset), hint)
		}
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return Usage(fmt.Errorf("reading %s: the %s has a field this %s does not know: %s", label, want, kinds[want].to, f),
				"was it made by another version of bb? make it again with this one's "+kinds[want].from)
		}
		return Usage(fmt.Errorf("reading %s: the %s: %w", label, want, err))
	}
	if dec.More() {
		return Usage(fmt.Errorf("reading %s: more than one JSON document", label), hint)
	}
	return nil
}

// start is the first line of what was read, cut short, for a message.
func start(b []byte) string {
	s := string(b)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return Printable(s)
}
