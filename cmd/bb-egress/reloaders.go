package main

import "github.com/bb-bottles/bb/lib/backend"

// A Docker bottle's sidecar is signalled by `bb-launch reload SLUG`, run
// beside this binary: bb-egress is also the FROM-scratch sidecar image and
// must not link the Docker client.
func init() { backend.RegisterExecReloader("docker", "bb-launch") }
