package audit

import (
	"encoding/json"
	"fmt"
)

// Filter selects log lines; its zero value selects every entry.
type Filter struct {
	Decision string // allow, deny or block; "" for any
	Canary   bool   // only lines where the canary was found
}

// CheckDecision reports whether d is a decision a Filter can select.
func CheckDecision(d string) error {
	switch d {
	case "", Allow, Deny, Block:
		return nil
	}
	return fmt.Errorf("unknown decision %q (want allow, deny or block)", d)
}

// Match parses line and reports whether it is an entry the filter selects;
// err is set when the line is not an entry at all.
func (f Filter) Match(line []byte) (bool, error) {
	var e Entry
	if err := json.Unmarshal(line, &e); err != nil {
		return false, fmt.Errorf("not an audit entry: %w", err)
	}
	if f.Decision != "" && e.Decision != f.Decision {
		return false, nil
	}
	if f.Canary && !e.Canary {
		return false, nil
	}
	return true, nil
}
