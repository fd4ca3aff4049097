package main

import "slices"

// Exit statuses. Each error type of the API (gateway/API.md) has its own, so
// a shell script can tell a script's exception from a busy server without
// parsing anything; the table is documented in the README ("Command line")
// and by `pyexec help`. The numbers are part of the CLI's interface: never
// renumber one, only add.
const (
	exitOK    = 0
	exitUsage = 2
	// exitUnknownType is an error type this pyexec does not know (a newer
	// server's).
	exitUnknownType = 28
	// exitSave: the execution succeeded but its output files or images
	// could not be written under --out.
	exitSave = 29
	// exitInterrupted: the user pressed Ctrl-C (SIGINT) or sent SIGTERM;
	// the execution was cancelled. 128+SIGINT, as shells report it.
	exitInterrupted = 130
	// exitUnhealthy is `pyexec health`'s answer for a service that
	// answers but cannot run executions.
	exitUnhealthy = 1
)

type exitEntry struct {
	Type string
	Code int
	Doc  string
}

// exitCodes maps an error type to its exit status, in the README's order.
var exitCodes = []exitEntry{
	{"exception", 1, "the script raised (as python itself exits 1)"},
	{"syntax_error", 3, "the script does not compile"},
	{"missing_main", 4, "no callable main()"},
	{"invalid_args", 5, "--arg values do not fit main()'s parameters"},
	{"invalid_result", 6, "main() returned something that is not JSON"},
	{"result_too_large", 7, "the result is over the result cap"},
	{"exited", 8, "the script ended its process without a result"},
	{"result_corrupted", 9, "the script spoilt its own answer"},
	{"timeout", 10, "the wall-clock limit passed"},
	{"memory_limit", 11, "the memory limit was hit"},
	{"resource_limit", 12, "another limit (CPU time, file size, processes)"},
	{"cancelled", 13, "the execution was cancelled by the service"},
	{"invalid_request", 14, "the service refused the request (a limit out of range, a bad file name, ...)"},
	{"body_too_large", 15, "the request (script, args and files) is too large"},
	{"headers_too_large", 16, "the request headers are too large"},
	{"request_timeout", 17, "the request was not sent in time"},
	{"not_found", 18, "no such endpoint (a wrong --url path?)"},
	{"method_not_allowed", 19, "wrong method (a wrong --url path?)"},
	{"busy", 20, "every slot and queue place is taken; retry"},
	{"too_many_connections", 21, "too many connections from this address; retry"},
	{"rate_limited", 22, "the API key's rate or concurrency limit; retry"},
	{"unauthorized", 23, "a missing or wrong API key (--key, PYEXEC_API_KEY)"},
	{"unavailable", 24, "the service or its supervisor cannot be reached"},
	{"internal", 25, "the service failed (also: an answer cut off or not understood)"},
	{"version_mismatch", 26, "the supervisor speaks another protocol version (--socket)"},
	{"protocol_error", 27, "the supervisor found the connection broken (--socket)"},
}

// exitCode is the exit status for an error type.
func exitCode(errType string) int {
	for _, e := range exitCodes {
		if e.Type == errType {
			return e.Code
		}
	}
	return exitUnknownType
}

// exitTable is every exit status of pyexec run, in numeric order: the
// error types' and pyexec's own (in parentheses).
func exitTable() []exitEntry {
	t := []exitEntry{
		{"(success)", exitOK, "main() returned; its result is printed"},
		{"(usage)", exitUsage, "a bad command line, or an unreadable script or --file"},
		{"(other)", exitUnknownType, "an error type this pyexec does not know"},
		{"(save)", exitSave, "the script succeeded but --out could not be written"},
		{"(interrupted)", exitInterrupted, "Ctrl-C: the execution was cancelled"},
	}
	t = append(t, exitCodes...)
	slices.SortFunc(t, func(a, b exitEntry) int { return a.Code - b.Code })
	return t
}
