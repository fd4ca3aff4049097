// Package engine is what both execution engines share: an Execution and its
// Outcome, the Engine interface, the per-execution LimitSet, the Host the
// supervisor prepared for them, and the supervision loop (Supervise) that
// drives one started sandbox to its outcome, reading the runner's hostile
// answer and enforcing the deadline, cancellation and the memory watch.
//
// The engines themselves are its subpackages cold (one nsjail per execution)
// and warm (zygotes that fork a child per execution). Only the supervisor
// imports them; the gateway, wire and client never do (the import-rules test
// in internal/importrules fails if they do).
package engine
