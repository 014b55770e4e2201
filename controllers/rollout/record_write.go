package rollout

import (
	"context"
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	proof "github.com/vigil-dev/vigil/evidence"
	"github.com/vigil-dev/vigil/outcome"
)

// +kubebuilder:rbac:groups=vigil.dev,resources=releaserecords,verbs=get;list;watch;create;patch;delete

// The CRD's bounds on an entry's message and a record's attestation.
const (
	maxEntryMessage = 1024
	maxAttestation  = 65536
)

// readRecords fills s.records with the Rollout's ReleaseRecords, from
// the cache unless it is behind the controller's own record writes.
func (r *Reconciler) readRecords(ctx context.Context, s *scope) error {
	var list vigilv1.ReleaseRecordList
	ro := s.rollout
	indexed := []client.ListOption{client.InNamespace(ro.Namespace), client.MatchingFields{indexRecordRollout: ro.Name}}
	labelled := []client.ListOption{client.InNamespace(ro.Namespace), client.MatchingLabels{vigilv1.LabelRollout: ro.Name}}
	if err := r.listFresh(ctx, s, "ReleaseRecord", &list, indexed, labelled); err != nil {
		return fmt.Errorf("listing ReleaseRecords: %w", err)
	}
	s.records = slices.DeleteFunc(list.Items, func(rec vigilv1.ReleaseRecord) bool { return rec.Spec.RolloutRef.Name != ro.Name })
	return nil
}

// writeEvidence appends to the records what they owe before the reconcile
// decides or acts. The records were read as fresh as the controller's own
// last writes of them (readRecords), and a record is patched only at the
// resourceVersion read, so no entry is ever written twice. Any failure
// ends the reconcile before it decides or writes anything else.
func (r *Reconciler) writeEvidence(ctx context.Context, s *scope) error {
	defer prune(s)
	owe := bounded(s, owedEntries(s))
	if len(owe) == 0 {
		acknowledge(s)
		return nil
	}
	head := r.chainHead(s)
	for _, group := range byRevision(owe) {
		var err error
		if head, err = r.appendTo(ctx, s, head, group); err != nil {
			evidenceUnknowns.Inc()
			reconcileErrors.WithLabelValues("WriteUnknown").Inc()
			return err
		}
		s.rollout.Status.Evidence = head
	}
	return nil
}

// acknowledge moves the status's head to entries written ahead of a
// status patch that was lost, once they verify.
func acknowledge(s *scope) {
	head := s.rollout.Status.Evidence
	var tail int64
	for _, r := range s.records {
		for _, e := range r.Spec.Entries {
			tail = max(tail, e.Seq)
		}
	}
	if tail == 0 || head != nil && tail <= head.Seq {
		return
	}
	if rep := proof.Verify(s.rollout.Namespace, s.rollout.Name, head, s.rollout.Status.EvidenceCheckpoint, s.records); rep.Broken == nil {
		s.rollout.Status.Evidence = rep.Tail
	}
}

// chainHead verifies the live records against the status's head and
// returns the entry to append after: the newest of the chain's tail and
// the status's head (whose entries someone may have deleted). A broken
// chain is told, and the controller goes on appending to it.
func (r *Reconciler) chainHead(s *scope) *vigilv1.RecordLink {
	ro := s.rollout
	head := ro.Status.Evidence
	rep := proof.Verify(ro.Namespace, ro.Name, head, ro.Status.EvidenceCheckpoint, s.records)
	if b := rep.Broken; b != nil {
		s.record(true, vigilv1.ReasonEvidenceBroken, "Verify", "The evidence chain does not verify at %s; new entries are appended after it", b)
		s.metric(chainFailures.Inc)
	}
	if head == nil || rep.Tail != nil && rep.Tail.Seq >= head.Seq {
		return rep.Tail
	}
	return head
}

// appendTo writes items, all of one revision, to its open record (or a new
// one) after head, and returns the new head.
func (r *Reconciler) appendTo(ctx context.Context, s *scope, head *vigilv1.RecordLink, items []owed) (*vigilv1.RecordLink, error) {
	rec, orig, head, err := stage(s, head, items)
	if err != nil {
		return nil, err
	}
	if orig == nil {
		err = r.Create(ctx, rec)
	} else {
		err = r.Patch(ctx, rec, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
	}
	if err != nil {
		return nil, fmt.Errorf("writing ReleaseRecord %s: %w", rec.Name, err)
	}
	s.keep(rec)
	if orig == nil {
		s.metric(recordsCreated.Inc)
	}
	for _, o := range items {
		s.metric(entriesWritten.WithLabelValues(string(o.entry.Type)).Inc)
	}
	return head, nil
}

// stage appends items, all of one revision, after head to a copy of the
// revision's open record, or to a new record when none is open (orig is
// then nil), and returns the new head.
func stage(s *scope, head *vigilv1.RecordLink, items []owed) (rec, orig *vigilv1.ReleaseRecord, _ *vigilv1.RecordLink, _ error) {
	if open := s.openRecord(items[0].revision); open != nil {
		orig, rec = open.DeepCopy(), open.DeepCopy()
	} else {
		rec = newRecord(s, items[0].revision, head)
	}
	for _, o := range items {
		o.entry.Time = metav1.NewMicroTime(s.now)
		// Messages come from verdicts that may say more than an entry holds.
		o.entry.Message = outcome.Shorten(o.entry.Message, maxEntryMessage)
		var err error
		if head, err = proof.Append(rec, head, o.entry); err != nil {
			return nil, nil, nil, err
		}
		if o.outcome != "" {
			rec.Spec.Finalized, rec.Spec.Outcome = true, o.outcome
		}
	}
	// Signed in the write that finalises it: after it, nothing changes.
	if rec.Spec.Finalized && (orig == nil || !orig.Spec.Finalized) && s.signer != nil {
		att, err := s.signer.Attest(rec)
		if err != nil {
			return nil, nil, nil, err
		}
		if len(att) <= maxAttestation {
			rec.Spec.Attestation = att
		} else {
			s.record(true, vigilv1.ReasonEvidenceUnsigned, "Sign", "ReleaseRecord %s is finalised unsigned: its attestation would be %d bytes, over the %d a record holds",
				rec.Name, len(att), maxAttestation)
		}
	}
	return rec, orig, head, nil
}

// keep puts rec, as written, among s.records.
func (s *scope) keep(rec *vigilv1.ReleaseRecord) {
	if i := slices.IndexFunc(s.records, func(r vigilv1.ReleaseRecord) bool { return r.Name == rec.Name }); i >= 0 {
		s.records[i] = *rec
		return
	}
	s.records = append(s.records, *rec)
}

// newRecord is the record of revision that opens after head: named after
// the Rollout, the revision and its first seq, so a revision that comes
// back later gets a record of its own.
func newRecord(s *scope, revision string, head *vigilv1.RecordLink) *vigilv1.ReleaseRecord {
	ro := s.rollout
	seq := int64(1)
	if head != nil {
		seq = head.Seq + 1
	}
	rec := &vigilv1.ReleaseRecord{
		ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: fmt.Sprintf("%s-%s-%d", ro.Name, revision, seq),
			Labels: map[string]string{vigilv1.LabelRollout: ro.Name}},
		Spec: vigilv1.ReleaseRecordSpec{RolloutRef: vigilv1.LocalObjectReference{Name: ro.Name}, Revision: revision},
	}
	if head != nil {
		// The record opened last, so that a deleted record is always
		// named by the one after it, and the chain's head.
		// When the head's record is gone, it is still the last one known.
		last, lastSeq := head.Record, int64(0)
		if !slices.ContainsFunc(s.records, func(r vigilv1.ReleaseRecord) bool { return r.Name == head.Record }) {
			lastSeq = head.Seq
		}
		for _, r := range s.records {
			if len(r.Spec.Entries) > 0 && r.Spec.Entries[0].Seq > lastSeq {
				last, lastSeq = r.Name, r.Spec.Entries[0].Seq
			}
		}
		rec.Spec.Previous = &vigilv1.RecordLink{Record: last, Seq: head.Seq, Hash: head.Hash}
	}
	rec.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(ro, vigilv1.GroupVersion.WithKind("Rollout"))}
	return rec
}

// bounded drops the verdicts and approvals a full record no longer lists,
// and owes one Truncated entry in their place.
func bounded(s *scope, owe []owed) []owed {
	var out []owed
	for _, o := range owe {
		r := s.openRecord(o.revision)
		if r == nil || listed(r, o.entry.Type) {
			out = append(out, o)
			continue
		}
		if !slices.ContainsFunc(r.Spec.Entries, func(e vigilv1.RecordEntry) bool { return e.Type == vigilv1.EntryTruncated }) &&
			!slices.ContainsFunc(out, func(p owed) bool { return p.revision == o.revision && p.entry.Type == vigilv1.EntryTruncated }) {
			out = append(out, owed{revision: o.revision, entry: vigilv1.RecordEntry{Type: vigilv1.EntryTruncated,
				Message: fmt.Sprintf("The record reached its bound (%d entries or %d KiB): later verdicts and approvals are not listed; the Rollout's Events tell them", softEntries, softBytes>>10)}})
		}
	}
	return out
}
