//go:build unix && !linux && !darwin

package ptytest

// ioctlGetTermios is unknown here; Open skips before it matters.
const ioctlGetTermios = 0
