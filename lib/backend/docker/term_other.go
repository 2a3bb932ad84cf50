//go:build !unix

package docker

import "os"

// termWidth is the terminal's width in columns, or 0 when unknown.
func termWidth(*os.File) int { return 0 }
