// Package supervisor is the privileged half of python-executor: it listens on a
// Unix socket (never TCP), admits only the configured gateway identity and root
// (SO_PEERCRED, fail closed), and runs each execution in a fresh nsjail through
// an Engine, streaming stdout, stderr, the result and the final stats back over
// the protocol of package wire.
//
// It is the only package that execs anything. It imports jail (which alone
// knows nsjail's options) and wire; nothing imports it but cmd/supervisor and
// its own tests. Clients use package supervisor/client instead.
package supervisor
