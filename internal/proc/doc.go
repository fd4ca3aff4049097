// Package proc holds the supervisor's low-level process helpers: the child
// subreaper, pidfd-checked signalling of a parent's children, /proc/pid/stat
// parsing and the pool of per-execution host uids. It knows nothing of jails
// or executions; the engines and the supervisor import it.
package proc
