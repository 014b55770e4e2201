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
	"os"

	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/vigil-dev/vigil/outcome"
)

// Reasons of the outcome of a fetch, verification or render that did not
// produce objects to apply. Each is also a reason of the GitSync's Ready
// (and Stalled) condition.
const (
	// ReasonLimitExceeded: the repository is larger than a limit allows.
	ReasonLimitExceeded = "LimitExceeded"
	// ReasonAuthFailed: the server refused the credentials, or the
	// credentials Secret is unusable.
	ReasonAuthFailed = "AuthenticationFailed"
	// ReasonRefNotFound: the branch, tag or commit does not exist.
	ReasonRefNotFound = "RefNotFound"
	// ReasonFetchFailed: the fetch failed for a reason that will not go
	// away by itself (a bad URL, a broken pack).
	ReasonFetchFailed = "FetchFailed"
	// ReasonUnreachable: the server did not answer in time or at all; the
	// outcome is Unknown and the fetch is retried.
	ReasonUnreachable = "Unreachable"
	// ReasonUnsigned: verification is required and the commit has no signature.
	ReasonUnsigned = "CommitUnsigned"
	// ReasonUntrustedSignature: the signature is not by a trusted key or
	// does not match the commit.
	ReasonUntrustedSignature = "SignatureUntrusted"
	// ReasonUnsafeContent: the tree holds something Vigil will not read,
	// such as a symlink out of the repository.
	ReasonUnsafeContent = "UnsafeContent"
	// ReasonRenderFailed: the manifests do not render into objects.
	ReasonRenderFailed = "RenderFailed"
	// ReasonHistoryRewritten: the branch no longer contains the commit
	// last applied (a force-push); the new commit is not applied.
	ReasonHistoryRewritten = "HistoryRewritten"
	// ReasonRemoteRefused: kustomize would have loaded something from the
	// network or run a program.
	ReasonRemoteRefused = "RemoteContentRefused"
)

// Outcome is the outcome of a step of gitops that returned err. An error
// that carries no outcome says nothing of the repository: Unknown,
// Unreachable.
func Outcome(err error) outcome.Outcome {
	return outcome.Of(err, ReasonUnreachable)
}

// classify gives an error of a go-git remote operation its outcome: a
// timeout or a transport error is Unknown (Unreachable); refused
// credentials are a Failure (AuthenticationFailed); an HTTP status is what
// outcome.HTTPStatus says; anything else is the repository's Failure
// (FetchFailed).
func classify(ctx context.Context, err error, what string) error {
	if err == nil {
		return nil
	}
	var e *outcome.Error
	if errors.As(err, &e) {
		return err
	}
	wrapped := fmt.Errorf("%s: %w", what, err)
	switch {
	case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		return outcome.Unknownf(ReasonUnreachable, "%s: no answer before the timeout", what)
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed),
		errors.Is(err, transport.ErrInvalidAuthMethod):
		return &outcome.Error{Result: outcome.Failure, Reason: ReasonAuthFailed, Err: wrapped}
	case outcome.Transient(err), httpStatus(err) && outcome.Classify(err) == outcome.Unknown:
		return &outcome.Error{Result: outcome.Unknown, Reason: ReasonUnreachable, Err: wrapped}
	}
	return &outcome.Error{Result: outcome.Failure, Reason: ReasonFetchFailed, Err: wrapped}
}

// httpStatus tells an error that carries an HTTP status code.
func httpStatus(err error) bool {
	var code interface{ StatusCode() int }
	return errors.As(err, &code)
}
