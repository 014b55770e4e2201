// Package provenance decides whether an image may run: it pins the image by
// digest, finds its Sigstore signatures and attestations in the registry,
// verifies them against a policy's authorities, and checks that the SLSA
// provenance binds the image to reviewed code in Git.
//
// Nothing here fetches trust material from the network: public keys and
// trusted roots come with the Policy. The registry and Git servers are read
// within size, count and time limits.
package provenance

import "github.com/vigil-dev/vigil/outcome"

// Reasons of a verification's outcome. Each is a reason of the Rollout's
// Verified condition.
const (
	// ReasonVerified: signed by an authority, with the provenance required.
	ReasonVerified = "Verified"
	// ReasonUnsigned: no signature of the image was found.
	ReasonUnsigned = "Unsigned"
	// ReasonSignatureUntrusted: signatures were found, but none verifies
	// against the policy's authorities (another key or identity).
	ReasonSignatureUntrusted = "SignatureUntrusted"
	// ReasonCertificateNotValid: a certificate was used outside its
	// validity window (the log entry was integrated after it expired or
	// before it began).
	ReasonCertificateNotValid = "CertificateNotValid"
	// ReasonSubjectMismatch: a genuine signature or attestation names
	// another digest: it was made for another image and copied here.
	ReasonSubjectMismatch = "SubjectMismatch"
	// ReasonDigestMismatch: the registry served content whose digest is
	// not the one asked for.
	ReasonDigestMismatch = "DigestMismatch"
	// ReasonNotPinned: the policy requires a digest and the image names a tag.
	ReasonNotPinned = "NotPinnedByDigest"
	// ReasonImageNotFound: the registry has no such image.
	ReasonImageNotFound = "ImageNotFound"
	// ReasonBadImageReference: the image reference does not parse.
	ReasonBadImageReference = "BadImageReference"
	// ReasonProvenanceMissing: the image is signed, but no SLSA provenance
	// by an authority was found.
	ReasonProvenanceMissing = "ProvenanceMissing"
	// ReasonProvenanceInvalid: the provenance does not parse as SLSA v1.
	ReasonProvenanceInvalid = "ProvenanceInvalid"
	// ReasonBuilderNotAllowed: the provenance names a builder the policy
	// does not list.
	ReasonBuilderNotAllowed = "BuilderNotAllowed"
	// ReasonSourceNotAllowed: the provenance names a source repository the
	// policy does not list.
	ReasonSourceNotAllowed = "SourceNotAllowed"
	// ReasonCommitNotProtected: the source commit is on none of the
	// protected refs: it was built from unmerged code.
	ReasonCommitNotProtected = "CommitNotProtected"
	// ReasonCommitNotApplied: the image was built from the GitSync's own
	// repository, from a commit outside the history of the applied revision.
	ReasonCommitNotApplied = "CommitNotApplied"
	// ReasonPolicyInvalid: the policy's keys or trusted roots do not load.
	ReasonPolicyInvalid = "PolicyInvalid"
	// ReasonRegistryUnavailable: the registry timed out, failed (5xx) or
	// throttled (429). The result is Unknown.
	ReasonRegistryUnavailable = "RegistryUnavailable"
	// ReasonSourceUnavailable: the source repository could not be read.
	// The result is Unknown.
	ReasonSourceUnavailable = "SourceUnavailable"
)

// Verdict is what one verification of one image found: Success (the
// image passed), Failure (it is refused) or Unknown (the registry or a Git
// server did not answer; the question is asked again), with a reason.
type Verdict struct {
	outcome.Outcome
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
