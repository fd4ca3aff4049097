"""Schemathesis hooks for the e2e fuzz run (gateway/e2e/schemathesis_test.go).

The built-in not_a_server_error check treats every 5xx as a failure, but this
API answers 500 when the *script* fails (it raised, exited, hit a limit): a
fuzzer that sends arbitrary source text gets those by design. The check below
is the API's own rule instead: a 5xx must be one of the documented error
types for its status, and never `internal`, which means the service itself
failed.
"""

import json

import schemathesis

# The error types each 5xx may carry (gateway/openapi.json, ErrorNNN).
ALLOWED_5XX = {
    500: {"exception", "exited", "result_corrupted", "timeout", "memory_limit", "resource_limit", "cancelled"},
    503: {"busy", "unavailable"},
}


@schemathesis.check
def no_service_failure(ctx, response, case):
    """A 5xx is a documented script, load or lifecycle answer, never `internal`."""
    if response.status_code < 500:
        return None
    try:
        body = json.loads(response.content)
        error_type = body["error"]["type"]
    except (ValueError, TypeError, KeyError):
        raise AssertionError(f"{response.status_code} without the error body: {response.content[:300]!r}") from None
    if error_type == "internal":
        raise AssertionError(f"the service failed (internal): {body['error'].get('message')}")
    if error_type not in ALLOWED_5XX.get(response.status_code, set()):
        raise AssertionError(f"{response.status_code} with error type {error_type!r}, not a documented answer")
    return None


@schemathesis.check
class scripts_ran:  # noqa: N801 (the name is the check's name on the command line)
    """The run reached the engines: POST /execute answered 200 (a script ran and returned) at least once.

    A fuzz run whose every request was refused at the door would prove nothing about the executions.
    """

    def __init__(self):
        self.statuses = set()

    def after_response(self, ctx, response, case):
        if case.operation.label == "POST /execute":
            self.statuses.add(response.status_code)

    def after_run(self, ctx):
        if 200 not in self.statuses:
            raise AssertionError(f"POST /execute never answered 200 (statuses seen: {sorted(self.statuses)})")


@schemathesis.deserializer("application/x-ndjson")
def ndjson_final_object(ctx, response):
    """A streamed answer: every line must be a JSON object; the last one, the final object, is what is validated."""
    last = None
    for n, line in enumerate(response.content.splitlines(), 1):
        if not line.strip():
            continue
        value = json.loads(line)
        if not isinstance(value, dict):
            raise ValueError(f"line {n} is not a JSON object: {line[:200]!r}")
        last = value
    if last is None:
        raise ValueError("an empty stream")
    return last
