// Package warm is the warm engine: long-lived zygotes, each a runner in its
// own nsjail that imported the heavy modules once, fork a single-use child
// per execution (or hand out a spare forked ahead of time); the child builds
// fresh namespaces, joins the execution's cgroup and locks itself down before
// the script runs (runner/zygote.py is its side). The shared supervision loop
// is package engine's; only the supervisor imports this package.
package warm
