// Package cold is the cold engine: every execution runs in a fresh nsjail
// running the runner, with a cgroup of its own where the host has them, and,
// in the container tier (jail.Policy.NoNamespaces), a uid and a working
// directory of its own. The shared supervision loop is package engine's;
// only the supervisor imports this package.
package cold
