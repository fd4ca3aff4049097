// Package gateway is the public HTTP front of python-executor: a fasthttp
// server that parses and validates requests, hands executions to the
// supervisor and maps their outcomes to HTTP responses.
//
// The gateway runs as an unprivileged user and holds no privilege: it never
// execs anything and never touches a jail. It imports only the protocol
// packages, client and wire; it must never import the
// supervisor, the jail or the runner. Those rules keep the public, parsing
// side of the service free of anything that could start a process.
//
// Only cmd/gateway imports this package. The HTTP API it serves is described
// in API.md beside this file.
package gateway
