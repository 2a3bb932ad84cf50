package macoscontainer

// Until lib/names (the backend seam) is on this branch.
const (
	labelRole  = "bb.role"
	roleImage  = "image"
	roleEgress = "egress"
)
