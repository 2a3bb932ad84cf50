package docker

import "github.com/bb-bottles/bb/lib/names"

// The tests of this package name labels and roles unqualified.
const (
	LabelSlug    = names.LabelSlug
	LabelRole    = names.LabelRole
	LabelTest    = names.LabelTest
	LabelTestRun = names.LabelTestRun
	LabelLaunch  = names.LabelLaunch
	RoleAgent    = names.RoleAgent
	RoleEgress   = names.RoleEgress
)
