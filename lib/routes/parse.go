package routes

import (
	"fmt"

	"github.com/bb-bottles/bb/lib/yamlx"
)

// Parse reads the sidecar's routes file: a YAML list of routes in the
// schema of a bottle's egress.routes. Unknown fields are refused, and every
// error is a *yamlx.Error naming file, line, column and field
// ("routes.yaml:3:9: [0].host: ..."). An empty file, or [], is an empty
// list: the sidecar then denies everything.
func Parse(data []byte, file string) ([]Route, error) {
	root, err := yamlx.Parse(data, file)
	if err != nil {
		return nil, err
	}
	d := yamlx.NewDecoder(file)
	var rs []Route
	if err := d.Decode(root, "", &rs); err != nil {
		return nil, err
	}
	if err := ValidateAt(rs, "", d.Pos); err != nil {
		return nil, err
	}
	if rs == nil {
		rs = []Route{}
	}
	return rs, nil
}

// ValidateAt validates rs, decoded at field path path, and returns the
// first error positioned where the offending field was.
func ValidateAt(rs []Route, path string, pos *yamlx.Positions) error {
	for i := range rs {
		err := rs[i].Validate()
		if err == nil {
			continue
		}
		fe, ok := err.(*FieldError)
		if !ok {
			return err
		}
		return pos.Errorf(fmt.Sprintf("%s[%d].%s", path, i, fe.Field), "%s", fe.Msg)
	}
	if err := CheckGitHosts(rs); err != nil {
		fe := err.(*FieldError)
		return pos.Errorf(path+fe.Field, "%s", fe.Msg)
	}
	return nil
}
