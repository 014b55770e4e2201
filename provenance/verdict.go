// Package provenance decides whether an image may run: it pins the image by
// digest, finds its Sigstore signatures and attestations in the registry,
// verifies them against a policy's authorities, and checks that the SLSA
// provenance binds the image to reviewed code in Git.
//
// Nothing here fetches trust material from the network: public keys and
// trusted roots come with the Policy. The registry and Git servers are read
// within size, count and time limits.
package provenance

import (
	"errors"
	"fmt"
)

// Result is the outcome of a verification. Unknown is neither: the
// registry or a Git server did not answer, and the question is asked again.
type Result string

const (
	Passed  Result = "Passed"
	Failed  Result = "Failed"
	Unknown Result = "Unknown"
)

// Reason says why a verification ended as it did. Each is a condition
// reason of the Rollout's Verified condition.
type Reason string

const (
	// ReasonVerified: signed by an authority, with the provenance required.
	ReasonVerified Reason = "Verified"
	// ReasonUnsigned: no signature of the image was found.
	ReasonUnsigned Reason = "Unsigned"
	// ReasonSignatureUntrusted: signatures were found, but none verifies
	// against the policy's authorities (another key or identity).
	ReasonSignatureUntrusted Reason = "SignatureUntrusted"
	// ReasonCertificateNotValid: a certificate was used outside its
	// validity window (the log entry was integrated after it expired or
	// before it began).
	ReasonCertificateNotValid Reason = "CertificateNotValid"
	// ReasonSubjectMismatch: a genuine signature or attestation names
	// another digest: it was made for another image and copied here.
	ReasonSubjectMismatch Reason = "SubjectMismatch"
	// ReasonDigestMismatch: the registry served content whose digest is
	// not the one asked for.
	ReasonDigestMismatch Reason = "DigestMismatch"
	// ReasonNotPinned: the policy requires a digest and the image names a tag.
	ReasonNotPinned Reason = "NotPinnedByDigest"
	// ReasonImageNotFound: the registry has no such image.
	ReasonImageNotFound Reason = "ImageNotFound"
	// ReasonBadImageReference: the image reference does not parse.
	ReasonBadImageReference Reason = "BadImageReference"
	// ReasonProvenanceMissing: the image is signed, but no SLSA provenance
	// by an authority was found.
	ReasonProvenanceMissing Reason = "ProvenanceMissing"
	// ReasonProvenanceInvalid: the provenance does not parse as SLSA v1.
	ReasonProvenanceInvalid Reason = "ProvenanceInvalid"
	// ReasonBuilderNotAllowed: the provenance names a builder the policy
	// does not list.
	ReasonBuilderNotAllowed Reason = "BuilderNotAllowed"
	// ReasonSourceNotAllowed: the provenance names a source repository the
	// policy does not list.
	ReasonSourceNotAllowed Reason = "SourceNotAllowed"
	// ReasonCommitNotProtected: the source commit is on none of the
	// protected refs: it was built from unmerged code.
	ReasonCommitNotProtected Reason = "CommitNotProtected"
	// ReasonCommitNotApplied: the image was built from the GitSync's own
	// repository, from a commit outside the history of the applied revision.
	ReasonCommitNotApplied Reason = "CommitNotApplied"
	// ReasonPolicyInvalid: the policy's keys or trusted roots do not load.
	ReasonPolicyInvalid Reason = "PolicyInvalid"
	// ReasonRegistryUnavailable: the registry timed out, failed (5xx) or
	// throttled (429). The result is Unknown.
	ReasonRegistryUnavailable Reason = "RegistryUnavailable"
	// ReasonSourceUnavailable: the source repository could not be read.
	// The result is Unknown.
	ReasonSourceUnavailable Reason = "SourceUnavailable"
)

// Verdict is what one verification of one image found.
type Verdict struct {
	Result  Result
	Reason  Reason
	Message string
	// Image is the reference as written; Pinned is repository@digest.
	Image, Pinned, Digest string
	// Signer is the verified identity: a keyless certificate's subject
	// (with its issuer), or the name of the key authority.
	Signer string
	// Builder, SourceRepository and SourceCommit come from the verified
	// provenance, when the policy requires it.
	Builder, SourceRepository, SourceCommit string
	// Cached is true when the verdict was served from the cache.
	Cached bool
}

// verdictError carries a Reason through the steps of a verification.
type verdictError struct {
	result Result
	reason Reason
	err    error
}

func (e *verdictError) Error() string { return e.err.Error() }
func (e *verdictError) Unwrap() error { return e.err }

func refuse(reason Reason, format string, args ...any) error {
	return &verdictError{result: Failed, reason: reason, err: fmt.Errorf(format, args...)}
}

func unknown(reason Reason, format string, args ...any) error {
	return &verdictError{result: Unknown, reason: reason, err: fmt.Errorf(format, args...)}
}

// outcome turns an error of a step into a result and reason. An error
// without one is Unknown: nothing was learnt about the image.
func outcome(err error) (Result, Reason) {
	var e *verdictError
	if errors.As(err, &e) {
		return e.result, e.reason
	}
	return Unknown, ReasonRegistryUnavailable
}
