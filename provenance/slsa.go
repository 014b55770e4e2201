package provenance

import (
	"context"
	"os"
	"slices"
	"strings"

	provv1 "github.com/in-toto/attestation/go/predicates/provenance/v1"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/outcome"
)

// source is what a verified provenance says about the build.
type source struct {
	builder, repository, commit string
}

// DefaultProtectedRefs is used for a source repository that names none.
var DefaultProtectedRefs = []string{"refs/heads/main"}

// checkProvenance reads the verified SLSA v1 statement and checks its
// builder, its source repository, and that the source commit is reviewed
// code: reachable from a protected ref and, for the GitSync's own
// repository, in the history of the applied revision. Only the verified
// statement is read; annotations around it never count.
func (v *Verifier) checkProvenance(ctx context.Context, req Request, res *verify.VerificationResult) (source, error) {
	st := res.Statement
	if st == nil || st.GetPredicateType() != PredicateSLSA || st.GetPredicate() == nil {
		return source{}, outcome.Failf(ReasonProvenanceInvalid, "the provenance is not a SLSA v1 statement")
	}
	raw, err := protojson.Marshal(st.GetPredicate())
	if err != nil {
		return source{}, outcome.Failf(ReasonProvenanceInvalid, "the provenance predicate does not encode: %v", err)
	}
	var p provv1.Provenance
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, &p); err != nil {
		return source{}, outcome.Failf(ReasonProvenanceInvalid, "the provenance predicate is not SLSA v1: %v", err)
	}
	src := source{builder: p.GetRunDetails().GetBuilder().GetId()}
	src.repository, src.commit = sourceOf(&p)
	req2 := req.Policy.Provenance
	if !slices.Contains(req2.BuilderIDs, src.builder) {
		return src, outcome.Failf(ReasonBuilderNotAllowed, "the image was built by %q, which the policy does not allow (allowed: %s)",
			src.builder, strings.Join(req2.BuilderIDs, ", "))
	}
	if src.repository == "" || src.commit == "" {
		return src, outcome.Failf(ReasonProvenanceInvalid, "the provenance names no Git source (a resolvedDependencies entry with a gitCommit digest)")
	}
	allowed, ok := allowedSource(req2.Sources, src.repository)
	if !ok {
		return src, outcome.Failf(ReasonSourceNotAllowed, "the image was built from %s, which the policy does not allow", src.repository)
	}
	return src, v.checkCommit(ctx, req, allowed, src.commit)
}

// sourceOf finds the Git source in resolvedDependencies: the first entry
// with a gitCommit (or sha1) digest. Its URI is git+<url>[@<ref>].
func sourceOf(p *provv1.Provenance) (repo, commit string) {
	for _, d := range p.GetBuildDefinition().GetResolvedDependencies() {
		c := d.GetDigest()["gitCommit"]
		if c == "" {
			c = d.GetDigest()["sha1"]
		}
		if c == "" || d.GetUri() == "" {
			continue
		}
		u := strings.TrimPrefix(d.GetUri(), "git+")
		// Cut a trailing @<ref>, but not the user@ of ssh://user@host/x.
		if i := strings.LastIndex(u, "@"); i > 0 {
			_, path, _ := strings.Cut(u[:i], "://")
			if strings.Contains(path, "/") {
				u = u[:i]
			}
		}
		return u, strings.ToLower(c)
	}
	return "", ""
}

func allowedSource(sources []Source, repo string) (Source, bool) {
	want := gitops.NormalizeURL(repo)
	for _, s := range sources {
		if want != "" && gitops.NormalizeURL(s.URL) == want {
			return s, true
		}
	}
	return Source{}, false
}

// checkCommit fetches the history of the protected refs (and of the
// GitSync's ref, when the source is its repository) from the URL the
// policy names, never from one the provenance names.
func (v *Verifier) checkCommit(ctx context.Context, req Request, src Source, commit string) error {
	protected := src.ProtectedRefs
	if len(protected) == 0 {
		protected = DefaultProtectedRefs
	}
	refs := slices.Clone(protected)
	applied := req.Applied
	sameRepo := applied != nil && gitops.NormalizeURL(applied.URL) == gitops.NormalizeURL(src.URL)
	if sameRepo && applied.Ref != "" && !slices.Contains(refs, applied.Ref) {
		refs = append(refs, applied.Ref)
	}
	dir, err := os.MkdirTemp(v.WorkDir, "history-")
	if err != nil {
		return outcome.Unknownf(ReasonSourceUnavailable, "making a directory for the history of %s: %v", src.URL, err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	h, err := gitops.FetchHistory(ctx, src.URL, src.Auth, refs, dir, v.GitLimits)
	if err != nil {
		return gitError(err, "reading the history of "+src.URL)
	}
	ref, err := h.ReachableFrom(commit, protected)
	if err != nil {
		return gitError(err, "walking the history of "+src.URL)
	}
	if ref == "" {
		return outcome.Failf(ReasonCommitNotProtected, "source commit %s is not reachable from %s of %s: it was built from unreviewed code",
			commit, strings.Join(protected, " or "), src.URL)
	}
	if !sameRepo {
		return nil
	}
	ok, err := h.IsAncestor(commit, applied.Revision)
	if err != nil {
		if o := gitops.Outcome(err); o.Result == outcome.Failure && o.Reason == gitops.ReasonRefNotFound {
			return outcome.Failf(ReasonCommitNotApplied, "the applied revision %s is not in the history of %s: %v", applied.Revision, src.URL, err)
		}
		return gitError(err, "walking the history of "+src.URL)
	}
	if !ok {
		return outcome.Failf(ReasonCommitNotApplied, "source commit %s is not the applied revision %s or an ancestor of it: the image was not built from the code Git says to deploy",
			commit, applied.Revision)
	}
	return nil
}

// gitError keeps an Unknown Git outcome Unknown; anything else about the
// repository is a refusal.
func gitError(err error, what string) error {
	if gitops.Outcome(err).Result == outcome.Unknown {
		return outcome.Unknownf(ReasonSourceUnavailable, "%s: %v", what, err)
	}
	return outcome.Failf(ReasonSourceUnavailable, "%s: %v", what, err)
}
