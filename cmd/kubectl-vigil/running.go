package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	proof "github.com/vigil-dev/vigil/evidence"
)

// errNonConforming makes running exit non-zero once it has listed a pod
// that runs what no verified record put there.
var errNonConforming = errors.New("some pods run what no verified record put there")

// running lists each container of each pod of the Rollout with the record
// that put its image there, and flags a pod that runs an image no record
// of its revision names, or (under a TrustPolicy) no passed verification.
func (a *app) running(ctx context.Context, name string) error {
	ro, recs, err := a.records(ctx, name)
	if err != nil {
		return err
	}
	rep := proof.Verify(ro.Namespace, ro.Name, ro.Status.Evidence, ro.Status.EvidenceCheckpoint, recs)
	if rep.Broken != nil {
		a.printf("The evidence chain does not verify (%v); no record is trusted.\n", rep.Broken)
		recs = nil
	}
	sel, err := metav1.LabelSelectorAsSelector(ro.Spec.Selector)
	if err != nil {
		return fmt.Errorf("Rollout %s has an unusable selector: %w", ro.Name, err)
	}
	c, _, err := a.client()
	if err != nil {
		return err
	}
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(ro.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return fmt.Errorf("listing the pods of Rollout %s: %w", ro.Name, err)
	}
	tw := tabwriter.NewWriter(a.streams.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tCONTAINER\tREVISION\tDIGEST\tRECORD\tCOMMIT\tSIGNER\tAPPROVERS\tCONFORMS")
	flagged := 0
	for _, pod := range pods.Items {
		rev := pod.Labels[vigilv1.LabelPodTemplateHash]
		rec := newestOf(recs, rev)
		for _, ctr := range pod.Spec.Containers {
			row := conformance(rec, ro.Spec.Provenance != nil, ctr, digestOf(&pod, ctr))
			if !strings.HasPrefix(row.verdict, "yes") {
				flagged++
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", pod.Name, ctr.Name, or(rev, "-"), or(row.digest, "-"), or(row.record, "-"),
				or(short(row.commit), "-"), or(row.signer, "-"), or(strings.Join(row.approvers, ","), "-"), row.verdict)
		}
	}
	_ = tw.Flush()
	if flagged > 0 {
		return errNonConforming
	}
	return nil
}

// row is what running says of one container.
type row struct {
	digest, record, commit, signer string
	approvers                      []string
	verdict                        string
}

// conformance compares a container with the record of its pod's revision.
func conformance(rec *vigilv1.ReleaseRecord, verifies bool, ctr corev1.Container, digest string) row {
	r := row{digest: digest}
	if rec == nil {
		r.verdict = "NO: no verified record of this revision"
		return r
	}
	r.record = rec.Name
	var want *vigilv1.ImageRecord
	passed := false
	for _, e := range rec.Spec.Entries {
		switch {
		case e.Type == vigilv1.EntryObserved:
			r.commit = e.GitCommit
			if i := slices.IndexFunc(e.Images, func(img vigilv1.ImageRecord) bool { return img.Container == ctr.Name }); i >= 0 {
				want = &e.Images[i]
			}
		case e.Type == vigilv1.EntryVerified && e.Verification.Result == vigilv1.VerificationPassed:
			passed = true
			for _, img := range e.Verification.Images {
				r.signer = img.Signer
			}
		case e.Type == vigilv1.EntryApproval && e.Approval.Decision == vigilv1.ApprovalApprove:
			r.approvers = append(r.approvers, e.Approval.User)
		}
	}
	switch {
	case want == nil:
		r.verdict = "NO: the record names no container " + ctr.Name
	case want.Digest != "" && digest != want.Digest:
		r.verdict = fmt.Sprintf("NO: runs %s, the record names %s", or(digest, ctr.Image), want.Digest)
	case want.Digest == "" && ctr.Image != want.Image:
		r.verdict = fmt.Sprintf("NO: runs %s, the record names %s", ctr.Image, want.Image)
	case verifies && !passed:
		r.verdict = "NO: the record holds no passed verification"
	case !verifies:
		r.verdict = "yes (recorded; the Rollout verifies no provenance)"
	default:
		r.verdict = "yes"
	}
	return r
}

// newestOf is the newest record of revision, or nil.
func newestOf(recs []vigilv1.ReleaseRecord, revision string) *vigilv1.ReleaseRecord {
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Spec.Revision == revision {
			return &recs[i]
		}
	}
	return nil
}

// digestOf is the digest a container runs: the one its image names, else
// the one the kubelet reports it pulled.
func digestOf(pod *corev1.Pod, ctr corev1.Container) string {
	if _, d, ok := strings.Cut(ctr.Image, "@"); ok {
		return d
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == ctr.Name {
			if _, d, ok := strings.Cut(cs.ImageID, "@"); ok {
				return d
			}
		}
	}
	return ""
}

// short is a commit's first 12 characters.
func short(commit string) string { return commit[:min(len(commit), 12)] }
