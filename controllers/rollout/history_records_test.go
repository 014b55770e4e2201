package rollout

import (
	"fmt"
	"slices"

	"pgregory.net/rapid"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	proof "github.com/vigil-dev/vigil/evidence"
)

// writeEvidence mirrors Reconciler.writeEvidence over the model. When
// mayFail, a write may fail, with or without being applied, and the
// reconcile then ends before it decides or acts; false says so.
func (c *cluster) writeEvidence(t *rapid.T, s *scope, mayFail bool) bool {
	defer prune(s)
	owe := bounded(s, owedEntries(s))
	if debugHistory {
		for _, o := range owe {
			t.Logf("owed: %s %s %s %s (used %v)", o.revision, o.entry.Type, o.entry.State, o.entry.Message, s.rollout.Status.UsedApprovals)
		}
	}
	if len(owe) == 0 {
		acknowledge(s)
		return true
	}
	head := s.rollout.Status.Evidence
	rep := proof.Verify(s.rollout.Namespace, s.rollout.Name, head, s.rollout.Status.EvidenceCheckpoint, s.records)
	if rep.Broken != nil {
		t.Fatalf("the model's evidence chain broke: %v", rep.Broken)
	}
	if head == nil || rep.Tail != nil && rep.Tail.Seq >= head.Seq {
		head = rep.Tail
	}
	failAt := -1
	if mayFail {
		failAt = rapid.IntRange(-1, 6).Draw(t, "evidenceFailsAt")
	}
	for i, group := range byRevision(owe) {
		rec, _, next, err := stage(s, head, group)
		if err != nil {
			t.Fatal(err)
		}
		if i == failAt && !rapid.Bool().Draw(t, "failedRecordWriteApplied") {
			return false
		}
		s.keep(rec)
		c.keepRecord(rec)
		if i == failAt {
			return false
		}
		head = next
		s.rollout.Status.Evidence = head
	}
	return true
}

func (c *cluster) keepRecord(rec *vigilv1.ReleaseRecord) {
	if i := slices.IndexFunc(c.records, func(r vigilv1.ReleaseRecord) bool { return r.Name == rec.Name }); i >= 0 {
		c.records[i] = *rec.DeepCopy()
		return
	}
	c.records = append(c.records, *rec.DeepCopy())
}

// checkEvidenceAhead checks, by the model's records, that a reconcile about
// to move pods or traffic acts only on decisions already recorded: the
// rollback it carries out, the promotion of the stable revision, and every
// Approval it used.
func (c *cluster) checkEvidenceAhead(t *rapid.T, s *scope) {
	if s.rollout.DeletionTimestamp != nil {
		return // the only writes are the Services' clean-up
	}
	st := s.rollout.Status
	// in looks in revision's open record, or with finalised in any of its
	// records: an Approval's entry may be in a record finalised since (its
	// canary was replaced).
	in := func(rev string, finalised bool, f func(vigilv1.RecordEntry) bool) bool {
		for _, r := range c.records {
			if r.Spec.Revision == rev && (finalised || !r.Spec.Finalized) && slices.ContainsFunc(r.Spec.Entries, f) {
				return true
			}
		}
		return false
	}
	if rb := st.Rollback; rb != nil && !in(rb.Revision, false, func(e vigilv1.RecordEntry) bool {
		return e.Type == vigilv1.EntryRollback && e.Trigger == rb.Trigger && e.State == vigilv1.StateStarted
	}) {
		t.Fatalf("a reconcile acts on the rollback of %s (%s) before the record holds it: %s", rb.Revision, rb.Trigger, c.describe())
	}
	if st.StableRevision != "" && !in(st.StableRevision, false, func(e vigilv1.RecordEntry) bool { return e.Type == vigilv1.EntryPromotion }) {
		t.Fatalf("a reconcile acts on stable revision %s before the record holds its promotion: %s", st.StableRevision, c.describe())
	}
	for _, name := range st.UsedApprovals {
		i := slices.IndexFunc(c.approvals, func(a vigilv1.Approval) bool { return a.Name == name })
		if i >= 0 && !in(c.approvals[i].Spec.Revision, true, func(e vigilv1.RecordEntry) bool { return e.Type == vigilv1.EntryApproval && e.Approval.Name == name }) {
			t.Fatalf("a reconcile acts after using Approval %s before the record holds it", name)
		}
	}
}

// checkRecords checks the records a settled history leaves: the chain
// verifies against the status's head, no entry is written twice, and each
// outcome in the status's history has its Completed entry.
func (c *cluster) checkRecords(t *rapid.T) {
	if c.ro.DeletionTimestamp != nil {
		return
	}
	rep := proof.Verify(c.ro.Namespace, c.ro.Name, c.ro.Status.Evidence, c.ro.Status.EvidenceCheckpoint, c.records)
	if rep.Broken != nil || rep.Unacknowledged != 0 {
		t.Fatalf("the chain does not verify: %v (unacknowledged %d)", rep.Broken, rep.Unacknowledged)
	}
	seen := map[string]bool{}
	for _, r := range c.records {
		retries := 0
		for _, e := range r.Spec.Entries {
			key := fmt.Sprintf("%s/%d/%s/%s", r.Name, retries, e.Type, e.State)
			switch e.Type {
			case vigilv1.EntryRetry:
				retries++
				key = fmt.Sprintf("%s/retry/%d", r.Name, e.Seq)
			case vigilv1.EntryAnalysis:
				key = r.Name + "/run/" + e.Analysis.Run
			case vigilv1.EntryApproval:
				key = "approval/" + e.Approval.Name
			case vigilv1.EntryVerified:
				key += e.Verification.PolicyHash
			}
			if seen[key] {
				t.Fatalf("entry %d of %s (%s %s) is written twice", e.Seq, r.Name, e.Type, e.State)
			}
			seen[key] = true
		}
	}
	for i, h := range c.ro.Status.History {
		if i > 0 && (c.ro.Status.EvidenceCheckpoint != nil || h.Outcome == vigilv1.RolloutPhasePromoted) {
			// Older outcomes' records may have been pruned; and a promotion
			// whose revision was replaced before all its pods were
			// available never showed completed.
			continue
		}
		want := map[vigilv1.RolloutPhase]vigilv1.EntryType{vigilv1.RolloutPhasePromoted: vigilv1.EntryPromotion, vigilv1.RolloutPhaseRolledBack: vigilv1.EntryRollback}[h.Outcome]
		if !slices.ContainsFunc(c.records, func(r vigilv1.ReleaseRecord) bool {
			return r.Spec.Revision == h.Revision && slices.ContainsFunc(r.Spec.Entries, func(e vigilv1.RecordEntry) bool {
				return e.Type == want && e.State == vigilv1.StateCompleted
			})
		}) {
			t.Fatalf("revision %s was %s, and no record holds its completed %s", h.Revision, h.Outcome, want)
		}
	}
}

// dropRecord deletes a record from the model, as the API server would.
func (c *cluster) dropRecord(name string) {
	c.records = slices.DeleteFunc(c.records, func(r vigilv1.ReleaseRecord) bool { return r.Name == name })
}
