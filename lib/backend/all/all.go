// Package all registers every backend bb has with lib/backend: a command
// that drives bottles (bb-launch, bb-freeze) imports it for that alone. A
// new backend is one package under lib/backend and one line here.
package all

import (
	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/backend/docker"
	"github.com/bb-bottles/bb/lib/backend/macoscontainer"
	"github.com/bb-bottles/bb/lib/backend/smolvm"
)

func init() {
	backend.Register(docker.Driver)
	backend.Register(macoscontainer.Driver)
	backend.Register(smolvm.Driver)
}
