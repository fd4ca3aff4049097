// Package jail turns an execution policy into the configuration of the
// sandbox that runs one untrusted Python script, and prepares what the host
// needs for it. It is the only package that knows nsjail's options: the
// configuration it renders (protobuf text format, for nsjail 3.6) is the whole
// contract with nsjail, whose command line is then just
// `nsjail --config <file>` (see Argv).
//
// It provides five things:
//
//   - Render: a Policy (limits, mounts, environment, seccomp) as an nsjail
//     config, with the isolation the product requires fixed in code
//     (fresh user, mount, PID, net, IPC, UTS and cgroup namespaces, uid 65534,
//     no capabilities, no_new_privs, an empty read-only root).
//   - InterpreterMounts: the read-only bind mounts a given Python
//     installation (base prefix, virtualenv, shared libraries found by reading
//     ELF headers) needs inside the jail.
//   - Cgroups: detection of cgroup v1 or v2, the per-execution cgroup with the
//     real limits, its statistics (peak memory, OOM kill, pids limit hit) and
//     its removal.
//   - Stage: bind mounts that make sources under directories the jail's
//     user cannot traverse (such as /root) mountable by nsjail.
//   - Launch: the one way both engines start nsjail on a rendered config.
//
// Import rules: only privileged code (the supervisor and its engines)
// imports this package; the gateway, the wire protocol and its client never
// do, and it never imports the supervisor (see
// docs/ARCHITECTURE.md#import-rules). It executes nothing but nsjail, and
// that only when the caller asks (Launch.Start); otherwise it reads files,
// writes cgroup files, sends SIGKILL to the processes of an execution's
// cgroup (ExecCgroup.Kill) and, for Stage and Unstage, calls mount(2) in the
// caller's private mount namespace.
package jail
