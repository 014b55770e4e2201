// Package outcome is Vigil's one model of how an external call ends: a
// registry or Git fetch, a PromQL query, an API server write. Every call
// ends in Success, Failure or Unknown, with a reason and a message.
//
//   - Success: the call answered, and the answer is evidence.
//   - Failure: the call answered, and the answer says no, or the request
//     itself is wrong; asking again unchanged gets the same answer.
//   - Unknown: nothing was learnt (a timeout, a reset connection, a 5xx, a
//     throttled request). Unknown is never a pass and never silently a
//     failure: it is retried on a bounded Backoff, and once the budget is
//     spent the caller's declared policy decides.
//
// Classify tells the three apart from the error of a call with typed
// checks only; Backoff is the one retry policy for Unknown outcomes. The
// package holds no reasons of its own: each domain names its reasons, and
// those that become condition reasons are exported constants there or in
// the API.
package outcome

import (
	"errors"
	"fmt"
)

// Result is one of the three ways a call ends.
type Result string

const (
	Success Result = "Success"
	Failure Result = "Failure"
	Unknown Result = "Unknown"
)

// Outcome is how one call ended, for status and metrics.
type Outcome struct {
	Result Result
	// Reason is a PascalCase word for conditions and metric labels.
	Reason string
	// Message says what happened, for people; it never holds secrets.
	Message string
}

// Error is a call that did not succeed: a Failure or an Unknown outcome
// with its reason. It wraps the error it came from, when there was one.
type Error struct {
	Result Result
	Reason string
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Failf is a Failure with a reason and a message.
func Failf(reason, format string, args ...any) *Error {
	return &Error{Result: Failure, Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Unknownf is an Unknown outcome with a reason and a message.
func Unknownf(reason, format string, args ...any) *Error {
	return &Error{Result: Unknown, Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Of is the outcome of a call that returned err: Success for nil; the
// result and reason an *Error carries; otherwise what Classify finds, with
// the reason fallback.
func Of(err error, fallback string) Outcome {
	if err == nil {
		return Outcome{Result: Success}
	}
	var e *Error
	if errors.As(err, &e) {
		return Outcome{Result: e.Result, Reason: e.Reason, Message: err.Error()}
	}
	return Outcome{Result: Classify(err), Reason: fallback, Message: err.Error()}
}

// IsUnknown tells whether err is an Unknown outcome: nothing was learnt.
func IsUnknown(err error) bool {
	return err != nil && Of(err, "").Result == Unknown
}

// ReasonOf is the reason err carries, or "" when it carries none.
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}
