// Package e2e holds the end-to-end tests of python-executor: the real gateway
// (as its unprivileged user) in front of the real supervisor, real nsjail and
// real cgroups, driven over HTTP. They need root; under CI=true they fail
// rather than skip when it is missing. Nothing imports it.
//
// With PYEXEC_E2E_URL set they target a service already running instead (the
// container image, under make test-image), running their host checks where
// it runs; see internal/supervisortest/remote.go.
package e2e
