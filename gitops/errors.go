// Package gitops turns a Git repository into the objects a cluster should
// hold and makes the cluster hold them: it fetches one commit with go-git,
// shallow and within hard limits, checks the commit's signature, renders
// plain YAML or kustomize from an in-memory copy of the tree, and syncs the
// result with gitops-engine (server-side apply, waves, health, prune), and
// reports drift between what Git says and what the cluster holds.
//
// Nothing here imports controller-runtime; the GitSync controller wires it
// to the cluster.
package gitops

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
)

// Reason says why a fetch, verification or render did not produce objects
// to apply. Each is also a condition reason of the GitSync.
type Reason string

const (
	// ReasonLimitExceeded: the repository is larger than a limit allows.
	ReasonLimitExceeded Reason = "LimitExceeded"
	// ReasonAuthFailed: the server refused the credentials.
	ReasonAuthFailed Reason = "AuthenticationFailed"
	// ReasonRefNotFound: the branch, tag or commit does not exist.
	ReasonRefNotFound Reason = "RefNotFound"
	// ReasonFetchFailed: the fetch failed for a reason that will not go
	// away by itself (a bad URL, a broken pack).
	ReasonFetchFailed Reason = "FetchFailed"
	// ReasonUnreachable: the server did not answer in time or at all; the
	// outcome is Unknown and the fetch is retried.
	ReasonUnreachable Reason = "Unreachable"
	// ReasonUnsigned: verification is required and the commit has no signature.
	ReasonUnsigned Reason = "CommitUnsigned"
	// ReasonUntrustedSignature: the signature is not by a trusted key or
	// does not match the commit.
	ReasonUntrustedSignature Reason = "SignatureUntrusted"
	// ReasonUnsafeContent: the tree holds something Vigil will not read,
	// such as a symlink out of the repository.
	ReasonUnsafeContent Reason = "UnsafeContent"
	// ReasonRenderFailed: the manifests do not render into objects.
	ReasonRenderFailed Reason = "RenderFailed"
	// ReasonHistoryRewritten: the branch no longer contains the commit
	// last applied (a force-push); the new commit is not applied.
	ReasonHistoryRewritten Reason = "HistoryRewritten"
	// ReasonRemoteRefused: kustomize would have loaded something from the
	// network or run a program.
	ReasonRemoteRefused Reason = "RemoteContentRefused"
)

// Error is a failure with a Reason; Unknown marks failures that say
// nothing about the repository (a timeout, a network error) and are
// retried rather than reported as the repository's fault.
type Error struct {
	Reason  Reason
	Unknown bool
	Err     error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Fail is an error with reason.
func Fail(reason Reason, format string, args ...any) *Error {
	return fail(reason, format, args...)
}

func fail(reason Reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// ReasonOf is the Reason of err, and whether the outcome is Unknown.
// Errors without a Reason are Unknown.
func ReasonOf(err error) (Reason, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason, e.Unknown
	}
	return ReasonUnreachable, true
}

// classify turns an error of a go-git remote operation into an *Error.
func classify(ctx context.Context, err error, what string) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	var ne net.Error
	switch {
	case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		return &Error{Reason: ReasonUnreachable, Unknown: true, Err: fmt.Errorf("%s: no answer before the timeout", what)}
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed),
		errors.Is(err, transport.ErrInvalidAuthMethod):
		return &Error{Reason: ReasonAuthFailed, Err: fmt.Errorf("%s: %w", what, err)}
	case errors.As(err, &ne), errors.Is(err, net.ErrClosed), strings.Contains(err.Error(), "connection refused"),
		strings.Contains(err.Error(), "connection reset"), strings.Contains(err.Error(), "EOF"):
		return &Error{Reason: ReasonUnreachable, Unknown: true, Err: fmt.Errorf("%s: %w", what, err)}
	}
	return &Error{Reason: ReasonFetchFailed, Err: fmt.Errorf("%s: %w", what, err)}
}
