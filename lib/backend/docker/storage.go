package docker

import (
	"fmt"
	"strings"
)

// storage is what the engine says of its storage driver: whether it can
// bound a container's writable layer (--storage-opt size).
type storage struct {
	driver  string
	backing string // the backing filesystem, where the driver says
	refused string // the engine's error when it turned the size down
}

func storageOf(driver string, status [][2]string) storage {
	st := storage{driver: driver}
	for _, kv := range status {
		if kv[0] == "Backing Filesystem" {
			st.backing = kv[1]
		}
	}
	return st
}

// sized reports whether the driver takes a size per container. Docker
// documents --storage-opt size for devicemapper, btrfs, zfs, and overlay2
// on xfs mounted with pquota (docs.docker.com, "docker container run",
// --storage-opt); overlay2 on anything else, fuse-overlayfs and vfs turn
// it down. Whether xfs has pquota shows only when the engine tries.
func (st storage) sized() bool {
	switch st.driver {
	case "btrfs", "zfs", "devicemapper":
		return true
	case "overlay2", "overlay":
		return st.backing == "xfs"
	}
	return false
}

// storageOptRefused tells the engine's "this storage takes no size" from
// any other failure to create.
func storageOptRefused(err error) bool {
	m := strings.ToLower(err.Error())
	return strings.Contains(m, "storage-opt") || strings.Contains(m, "storage opt") || strings.Contains(m, "quota")
}

// diskNote is Record.DiskLimit: the bound, or why there is none.
func diskNote(limit string, st storage) string {
	switch {
	case limit != "":
		return limit
	case st.refused != "":
		return "none: the engine turned the size down (" + st.refused + ")"
	case st.driver == "":
		return "none: the engine did not name its storage driver"
	}
	d := st.driver
	if st.backing != "" {
		d += " on " + st.backing
	}
	return fmt.Sprintf("none: the engine's storage (%s) takes no size per container", d)
}
