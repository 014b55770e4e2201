package rollout

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/outcome"
)

// Evidence is written ahead. The status is where a decision is stored
// first (decide); every reconcile then, before it decides again or makes
// any write that acts on a decision, appends to the revision's
// ReleaseRecord each entry the status implies and the record lacks
// (owedEntries). So a promotion, a rollback, an Approval's use or a
// verdict's effect is in the record before any ReplicaSet, Service, route
// or Approval status moves for it; a crash between the two leaves the entry
// saying Started, and the next reconcile acts on the stored decision and
// later appends Completed. An entry is owed only while the record lacks
// it, so replays never duplicate one.

// Bounds of a record: past softEntries entries, or softBytes bytes of
// spec, verdicts and approvals are no longer listed one by one (one
// Truncated entry says so); promotions, rollbacks, retries and the final
// entry still are, up to the CRD's 96.
const (
	softEntries = 64
	softBytes   = 256 << 10
)

// owed is an entry a record lacks; one with an outcome finalises the
// record.
type owed struct {
	revision string
	entry    vigilv1.RecordEntry
	outcome  vigilv1.ReleaseOutcome
}

// byRevision splits owed entries into one group per revision (one write
// each), in the order the revisions first appear.
func byRevision(owe []owed) [][]owed {
	var out [][]owed
	for _, o := range owe {
		i := slices.IndexFunc(out, func(g []owed) bool { return g[0].revision == o.revision })
		if i < 0 {
			out = append(out, nil)
			i = len(out) - 1
		}
		out[i] = append(out[i], o)
	}
	return out
}

// openRecord is the record of revision that is not finalised, or nil.
func (s *scope) openRecord(revision string) *vigilv1.ReleaseRecord {
	for i := range s.records {
		r := &s.records[i]
		if r.Spec.Revision == revision && !r.Spec.Finalized && r.Spec.RolloutRef.Name == s.rollout.Name {
			return r
		}
	}
	return nil
}

// owedEntries lists what the records lack of what the status holds, in the
// order it happened: records to open, then verdicts and approvals, then
// the actions, then records to finalise.
func owedEntries(s *scope) []owed {
	st := &s.rollout.Status
	var out []owed
	for _, rev := range live(s) {
		if s.openRecord(rev) == nil {
			out = append(out, observed(s, rev))
		}
	}
	out = append(out, owedVerdicts(s)...)
	out = append(out, owedApprovals(s)...)
	if rb := st.Rollback; rb != nil {
		out = append(out, owedRollback(s, rb)...)
	} else if st.CanaryRevision != "" && lastOf(s, st.CanaryRevision, vigilv1.EntryRollback, vigilv1.EntryRetry) == vigilv1.EntryRollback {
		out = append(out, owed{revision: st.CanaryRevision, entry: vigilv1.RecordEntry{Type: vigilv1.EntryRetry, Step: ptr.To(int32(0)),
			Message: fmt.Sprintf("Revision %s is retried from step 0", st.CanaryRevision)}})
	}
	out = append(out, owedPromotion(s)...)
	for i := range s.records {
		r := &s.records[i]
		if !r.Spec.Finalized && r.Spec.RolloutRef.Name == s.rollout.Name && !slices.Contains(live(s), r.Spec.Revision) {
			out = append(out, finalise(r))
		}
	}
	return out
}

// live are the revisions whose records are open: stable, canary and the
// template's.
func live(s *scope) []string {
	st := s.rollout.Status
	var out []string
	for _, rev := range []string{st.StableRevision, st.CanaryRevision, s.revision} {
		if rev != "" && !slices.Contains(out, rev) {
			out = append(out, rev)
		}
	}
	return out
}

// observed opens the record of revision: its images, by digest where the
// template or the provenance gate pins one, and the commit the Rollout was
// applied from.
func observed(s *scope, revision string) owed {
	tpl := &s.rollout.Spec.Template
	if revision != s.revision {
		if rs := s.set(revision); rs != nil {
			tpl = &rs.Spec.Template
		}
	}
	var images []vigilv1.ImageRecord
	for _, c := range tpl.Spec.Containers[:min(len(tpl.Spec.Containers), 32)] {
		img := vigilv1.ImageRecord{Container: c.Name, Image: c.Image}
		ref := c.Image
		if p, ok := s.pinned[c.Image]; ok && revision == s.revision {
			ref = p
		}
		if _, digest, ok := strings.Cut(ref, "@"); ok {
			img.Digest = digest
		}
		images = append(images, img)
	}
	e := vigilv1.RecordEntry{Type: vigilv1.EntryObserved, Images: images, Message: fmt.Sprintf("Revision %s of Rollout %s", revision, s.rollout.Name)}
	if revision == s.revision {
		e.GitCommit = s.rollout.Annotations[gitops.RevisionAnnotation]
	}
	return owed{revision: revision, entry: e}
}

// owedVerdicts are the provenance verdict and the analysis verdicts the
// status holds that the records lack.
func owedVerdicts(s *scope) []owed {
	st := &s.rollout.Status
	var out []owed
	if v := st.Verification; v != nil && v.Result != vigilv1.VerificationUnknown && slices.Contains(live(s), v.Revision) &&
		!has(s, v.Revision, func(e vigilv1.RecordEntry) bool {
			return e.Type == vigilv1.EntryVerified && e.Verification.PolicyHash == v.PolicyHash && e.Verification.Result == v.Result
		}) {
		out = append(out, owed{revision: v.Revision, entry: vigilv1.RecordEntry{Type: vigilv1.EntryVerified, Message: v.Message,
			Verification: &vigilv1.VerificationRecord{Result: v.Result, Reason: v.Reason, PolicyHash: v.PolicyHash, Audit: v.Audit, Images: v.Images}}})
	}
	for _, a := range []*vigilv1.RolloutAnalysis{st.BackgroundAnalysis, st.Analysis} {
		if a == nil || !a.Verdict.Finished() || !slices.Contains(live(s), a.Revision) ||
			has(s, a.Revision, func(e vigilv1.RecordEntry) bool { return e.Type == vigilv1.EntryAnalysis && e.Analysis.Run == a.Run }) {
			continue
		}
		out = append(out, owed{revision: a.Revision, entry: vigilv1.RecordEntry{Type: vigilv1.EntryAnalysis, Step: a.Step, Message: a.Message,
			Analysis: &vigilv1.AnalysisRecord{Run: a.Run, Background: a.Step == nil, Attempt: a.Attempt, Verdict: a.Verdict, Measurements: a.Measurements}}})
	}
	return out
}

// owedApprovals are the Approvals the Rollout acted on (usedApprovals)
// that the records lack, with the identity their seal holds.
func owedApprovals(s *scope) []owed {
	var out []owed
	for _, name := range s.rollout.Status.UsedApprovals {
		i := slices.IndexFunc(s.approvals, func(a vigilv1.Approval) bool { return a.Name == name })
		if i < 0 {
			continue
		}
		a := &s.approvals[i]
		rev := a.Spec.Revision
		// Once in any record, an Approval is recorded: its revision may have
		// left and come back since, with a record of its own.
		if !slices.Contains(live(s), rev) || slices.ContainsFunc(s.records, func(r vigilv1.ReleaseRecord) bool {
			return slices.ContainsFunc(r.Spec.Entries, func(e vigilv1.RecordEntry) bool { return e.Type == vigilv1.EntryApproval && e.Approval.Name == name })
		}) {
			continue
		}
		id, err := s.key.Open(a)
		if err != nil {
			continue // never used: judge counts only what opens
		}
		at, _ := id.AdmittedAt()
		out = append(out, owed{revision: rev, entry: vigilv1.RecordEntry{Type: vigilv1.EntryApproval, Step: ptr.To(a.Spec.Step),
			Message: fmt.Sprintf("%s by %s at step %d", a.Spec.Decision, id.User, a.Spec.Step),
			Approval: &vigilv1.ApprovalRecord{Name: a.Name, User: outcome.Shorten(id.User, 1024), UID: outcome.Shorten(id.UID, 1024), Decision: a.Spec.Decision, Scope: a.Spec.Scope,
				Reason: a.Spec.Reason, AdmittedAt: metav1.NewMicroTime(at)}}})
	}
	return out
}

// owedRollback is the rollback's Started entry, and its Completed entry
// once traffic is back on stable.
func owedRollback(s *scope, rb *vigilv1.RollbackStatus) []owed {
	var out []owed
	last := lastState(s, rb.Revision, vigilv1.EntryRollback)
	if last == "" {
		out = append(out, owed{revision: rb.Revision, entry: vigilv1.RecordEntry{Type: vigilv1.EntryRollback, State: vigilv1.StateStarted,
			Step: ptr.To(rb.Step), Trigger: rb.Trigger, Message: rb.Message}})
	}
	if last != vigilv1.StateCompleted && s.rollout.Status.Phase == vigilv1.RolloutPhaseRolledBack {
		out = append(out, owed{revision: rb.Revision, entry: vigilv1.RecordEntry{Type: vigilv1.EntryRollback, State: vigilv1.StateCompleted,
			Trigger: rb.Trigger, Message: fmt.Sprintf("Stable revision %s serves all traffic", s.rollout.Status.StableRevision)}})
	}
	return out
}

// owedPromotion is the stable revision's promotion: Started once it is
// stable in the status, Completed once it serves everything.
func owedPromotion(s *scope) []owed {
	st := &s.rollout.Status
	rev := st.StableRevision
	if rev == "" {
		return nil
	}
	var out []owed
	last := lastState(s, rev, vigilv1.EntryPromotion)
	if last == "" {
		out = append(out, owed{revision: rev, entry: vigilv1.RecordEntry{Type: vigilv1.EntryPromotion, State: vigilv1.StateStarted,
			Message: fmt.Sprintf("Revision %s becomes stable", rev)}})
	}
	// Completed once the cluster shows it (every pod of the revision
	// available): the phase says Promoted from the decision on, before any
	// write acted on it.
	rs := s.set(rev)
	full := s.replicas == 0 || rs != nil && specReplicas(rs) >= s.replicas && fullyAvailable(rs)
	if last != vigilv1.StateCompleted && st.Phase == vigilv1.RolloutPhasePromoted && full {
		out = append(out, owed{revision: rev, entry: vigilv1.RecordEntry{Type: vigilv1.EntryPromotion, State: vigilv1.StateCompleted,
			Message: fmt.Sprintf("Every pod of revision %s is available", rev)}})
	}
	return out
}

// finalise closes a record whose revision left the Rollout.
func finalise(r *vigilv1.ReleaseRecord) owed {
	outcome := vigilv1.OutcomeReplaced
	for _, e := range r.Spec.Entries {
		switch e.Type {
		case vigilv1.EntryPromotion:
			outcome = vigilv1.OutcomePromoted
		case vigilv1.EntryRollback:
			outcome = vigilv1.OutcomeRolledBack
		case vigilv1.EntryRetry:
			outcome = vigilv1.OutcomeReplaced
		}
	}
	return owed{revision: r.Spec.Revision, outcome: outcome, entry: vigilv1.RecordEntry{Type: vigilv1.EntryFinalized, Outcome: outcome,
		Message: fmt.Sprintf("Revision %s is no longer stable, canary or the template: %s", r.Spec.Revision, outcome)}}
}

// has tells whether the open record of revision has an entry matching f
// (a pending one counts too).
func has(s *scope, revision string, f func(vigilv1.RecordEntry) bool) bool {
	if r := s.openRecord(revision); r != nil {
		return slices.ContainsFunc(r.Spec.Entries, f)
	}
	return false
}

// lastOf is the type of the newest entry of one of types in revision's
// open record, or "".
func lastOf(s *scope, revision string, types ...vigilv1.EntryType) vigilv1.EntryType {
	if r := s.openRecord(revision); r != nil {
		for i := len(r.Spec.Entries) - 1; i >= 0; i-- {
			if slices.Contains(types, r.Spec.Entries[i].Type) {
				return r.Spec.Entries[i].Type
			}
		}
	}
	return ""
}

// lastState is the state of the newest entry of type t in revision's open
// record since its last retry, or "".
func lastState(s *scope, revision string, t vigilv1.EntryType) vigilv1.EntryState {
	if r := s.openRecord(revision); r != nil {
		for i := len(r.Spec.Entries) - 1; i >= 0; i-- {
			switch e := r.Spec.Entries[i]; e.Type {
			case t:
				return e.State
			case vigilv1.EntryRetry:
				return ""
			}
		}
	}
	return ""
}

// listed tells whether an entry of type t still gets listed in r: past the
// soft bounds only actions and the final entry do.
func listed(r *vigilv1.ReleaseRecord, t vigilv1.EntryType) bool {
	switch t {
	case vigilv1.EntryVerified, vigilv1.EntryAnalysis, vigilv1.EntryApproval:
	default:
		return true
	}
	if len(r.Spec.Entries) >= softEntries {
		return false
	}
	b, err := json.Marshal(r.Spec)
	return err == nil && len(b) < softBytes
}

// defaultRecordLimit is releaseRecordLimit's default.
const defaultRecordLimit = 20

// span is the first and last seq of a record's entries.
func span(r *vigilv1.ReleaseRecord) (first, last int64) {
	if n := len(r.Spec.Entries); n > 0 {
		return r.Spec.Entries[0].Seq, r.Spec.Entries[n-1].Seq
	}
	return 0, 0
}

// prune moves status.evidenceCheckpoint to the newest entry of the oldest
// finalised records beyond releaseRecordLimit: every entry after it is in
// a record that stays, so what is kept verifies from it. (A record kept
// may hold entries from before the checkpoint: each still verifies on its
// own.) The status stores the checkpoint first; planRecords then deletes
// the records wholly behind it.
func prune(s *scope) {
	st := &s.rollout.Status
	limit := int(defaultRecordLimit)
	if l := s.rollout.Spec.ReleaseRecordLimit; l != nil {
		limit = int(*l)
	}
	var done, tail int64
	if cp := st.EvidenceCheckpoint; cp != nil {
		done = cp.Seq
	}
	var kept []*vigilv1.ReleaseRecord
	for i := range s.records {
		_, last := span(&s.records[i])
		tail = max(tail, last)
		if last > done || !s.records[i].Spec.Finalized {
			kept = append(kept, &s.records[i])
		}
	}
	// Only over records as current as the status's head: one the reader
	// does not show yet would lose entries behind the checkpoint.
	if len(kept) <= limit || st.Evidence == nil || tail != st.Evidence.Seq {
		return
	}
	slices.SortFunc(kept, func(x, y *vigilv1.ReleaseRecord) int { a, _ := span(x); b, _ := span(y); return cmp.Compare(a, b) })
	for _, r := range kept[:len(kept)-limit] {
		if !r.Spec.Finalized {
			return
		}
		if _, last := span(r); last > done {
			done, s.checkpointMoved = last, true
			st.EvidenceCheckpoint = &vigilv1.RecordLink{Record: r.Name, Seq: last, Hash: r.Spec.Entries[len(r.Spec.Entries)-1].Hash}
		}
	}
}

// planRecords deletes the finalised records whose entries are all behind
// the checkpoint. (An open record never goes, even when its entries are
// all older than a record finalised after them.)
func planRecords(s *scope) []change {
	cp := s.rollout.Status.EvidenceCheckpoint
	if cp == nil || s.checkpointMoved {
		return nil // a record goes only once the status holds the checkpoint past it
	}
	var out []change
	for i := range s.records {
		if _, last := span(&s.records[i]); last <= cp.Seq && s.records[i].Spec.Finalized {
			out = append(out, change{kind: deleteRecord, record: &s.records[i]})
		}
	}
	return out
}
