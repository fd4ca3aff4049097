// Package supervisor is the privileged half of python-executor: it listens on a
// Unix socket (never TCP), admits only the configured gateway identity, root and
// members of the optional client group (SO_PEERCRED, SO_PEERGROUPS, fail
// closed), names each connection's client and shares the slots fairly between
// clients (admission), and runs each execution through an Engine,
// streaming stdout, stderr, the result and the final stats back over the
// protocol of package wire. The cold engine starts a fresh nsjail for every
// execution; the warm engine (the default) keeps long-lived zygotes, each in
// its own nsjail, that clone a single-use child per execution which locks
// itself down before the script runs. Either way every execution gets its own
// namespaces, cgroup and limits; docs/ARCHITECTURE.md#one-execution-end-to-end
// follows one execution through each engine.
//
// It is the only package that execs anything. It imports jail (which alone
// knows nsjail's options) and wire; nothing imports it but cmd/supervisor and
// its own tests. Clients use package client instead.
package supervisor
