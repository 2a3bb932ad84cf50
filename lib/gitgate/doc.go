// Package gitgate holds the git gate's protocol and pack logic, apart from
// the proxy that serves it: which smart-HTTP endpoints of which repository
// a request is (ParseEndpoint); the head of a push as git's receive-pack
// reads it (ReadUpdate); the upstream's refs advertisement rewritten to ask
// for a self-contained pack (RewriteAdvert); the judgement of a push
// (Gate.Check): its refs against the route's push list, no deletion, no
// tag moved, fast-forwards only, and every object of its pack resolved and
// scanned for known secrets; the refusal as receive-pack would answer it
// (WriteRefusal); and a Mirror of the upstream repository, fetched only
// when a push needs history the pack does not hold or a thin pack's bases.
//
// Memory stays bounded whatever a push's size: the pack is read from a
// spool file (while it arrives), every object streams through its hash
// and the detector, and what deltas are based on is kept in a scratch
// file; about 60 bytes are held per object. go-git reads the pack format
// (its Scanner); its Parser is not used, as it holds whole objects and a
// 96 MiB cache in memory. git's own index-pack is the reference: every
// object resolves to the id, type and size it gives it, and fast-forwards
// are decided as git merge-base --is-ancestor decides them (the tests run
// both).
//
// What it does not catch: a secret split across objects, or encoded in a
// way the detector does not know (see package detect), and data that is
// not a known secret pushed to an allowed ref of a listed repository — the
// route allows that.
package gitgate
