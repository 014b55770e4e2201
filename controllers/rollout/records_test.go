package rollout

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	proof "github.com/vigil-dev/vigil/evidence"
	"github.com/vigil-dev/vigil/hack/testenv"
)

// records lists a Rollout's ReleaseRecords, oldest first.
func records(g Gomega, ro *vigilv1.Rollout) []vigilv1.ReleaseRecord {
	var list vigilv1.ReleaseRecordList
	g.Expect(k8s.List(context.Background(), &list, client.InNamespace(ro.Namespace), client.MatchingLabels{vigilv1.LabelRollout: ro.Name})).To(Succeed())
	slices.SortFunc(list.Items, func(x, y vigilv1.ReleaseRecord) int { return int(x.Spec.Entries[0].Seq - y.Spec.Entries[0].Seq) })
	return list.Items
}

// entries is "Type State" of each entry of rec, with the decision of an
// Approval and the outcome of the final entry.
func entries(rec vigilv1.ReleaseRecord) []string {
	var out []string
	for _, e := range rec.Spec.Entries {
		s := string(e.Type)
		switch {
		case e.State != "":
			s += " " + string(e.State)
		case e.Approval != nil:
			s += " " + string(e.Approval.Decision) + " by " + e.Approval.User
		case e.Outcome != "":
			s += " " + string(e.Outcome)
		}
		out = append(out, s)
	}
	return out
}

func TestEachRevisionHasAChainedRecordOfWhatHappenedToIt(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	kubelet(t, ns, nil)
	stop := startManager(t, nil)
	testenv.BindApprovers(t, k8s, ns, "alice", "bob")
	ro := newRollout(ns, "ledger", 2, "ledger:v1", approvalStep(), weightStep(50))
	g.Expect(k8s.Create(ctx, ro)).To(Succeed())
	waitPromoted(t, ro, 20*time.Second)

	newImage(t, ro, "ledger:v2")
	v2 := waitPending(t, ro, 0)
	g.Expect(decideAs(as(t, "alice"), ro, "alice-v2", v2, 0, vigilv1.ApprovalApprove, vigilv1.ApprovalScopeStep)).To(Succeed())
	waitPromoted(t, ro, 20*time.Second)

	newImage(t, ro, "ledger:v3")
	v3 := waitPending(t, ro, 0)
	g.Expect(decideAs(as(t, "bob"), ro, "bob-v3", v3, 0, vigilv1.ApprovalReject, vigilv1.ApprovalScopeStep)).To(Succeed())

	var recs []vigilv1.ReleaseRecord
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		g.Expect(cur.Status.Phase).To(Equal(vigilv1.RolloutPhaseRolledBack))
		recs = records(g, ro)
		g.Expect(recs).To(HaveLen(3))
		g.Expect(entries(recs[2])).To(HaveExactElements("Observed", "Approval Reject by bob", "Rollback Started", "Rollback Completed"))
		rep := proof.Verify(ns, ro.Name, cur.Status.Evidence, cur.Status.EvidenceCheckpoint, recs)
		g.Expect(rep.Broken).To(BeNil())
		g.Expect(rep.Unacknowledged).To(BeZero())
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Expect(entries(recs[0])).To(HaveExactElements("Observed", "Promotion Started", "Promotion Completed", "Finalized Promoted"))
	g.Expect(recs[0].Spec.Finalized).To(BeTrue())
	g.Expect(entries(recs[1])).To(HaveExactElements("Observed", "Approval Approve by alice", "Promotion Started", "Promotion Completed"))
	g.Expect(recs[1].Spec.Revision).To(Equal(v2))
	g.Expect(recs[1].Spec.Entries[0].Images).To(HaveExactElements(vigilv1.ImageRecord{Container: "app", Image: "ledger:v2"}))
	g.Expect(recs[2].Spec.Entries[2].Trigger).To(Equal(vigilv1.RollbackTriggerRejected))
	g.Expect(recs[2].Spec.Previous).To(And(HaveField("Record", recs[1].Name), HaveField("Seq", recs[2].Spec.Entries[0].Seq-1)),
		"each record links to the record before and the chain's head when it opened")

	// Nobody but the controller writes evidence; even the controller
	// cannot change a finalised record or an entry once written.
	g.Expect(k8s.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "record-editor"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"vigil.dev"}, Resources: []string{"releaserecords"}, Verbs: []string{"get", "update", "create"}}}})).To(Succeed())
	g.Expect(k8s.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "record-editor"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "record-editor"},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: "mallory"}}})).To(Succeed())
	open := recs[2].DeepCopy()
	open.Spec.Entries = append(open.Spec.Entries, vigilv1.RecordEntry{Seq: 99, Type: vigilv1.EntryPromotion, Time: metav1.NowMicro(),
		Message: "forged", Hash: "sha256:" + strings.Repeat("0", 64)})
	g.Expect(as(t, "mallory").Update(ctx, open)).To(MatchError(ContainSubstring("only Vigil's controller")))
	final := recs[0].DeepCopy()
	final.Spec.Outcome = vigilv1.OutcomeRolledBack
	err := k8s.Update(ctx, final)
	g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
	g.Expect(err).To(MatchError(ContainSubstring("a finalised ReleaseRecord is immutable")))
	edited := recs[1].DeepCopy()
	edited.Spec.Entries[1].Approval.User = "mallory"
	g.Expect(k8s.Update(ctx, edited)).To(MatchError(ContainSubstring("a ReleaseRecord entry never changes once written")))

	// What the API server lets through, verify names. The controller is
	// stopped so that it does not write meanwhile.
	stop()
	head := get(g, ro).Status.Evidence
	verify := func() *proof.Break { return proof.Verify(ns, ro.Name, head, nil, records(g, ro)).Broken }
	middle := recs[1].DeepCopy()
	g.Expect(k8s.Delete(ctx, middle)).To(Succeed())
	g.Expect(verify()).To(And(HaveField("Record", middle.Name), HaveField("Reason", ContainSubstring("are missing"))))
	middle.ResourceVersion, middle.UID = "", ""
	g.Expect(k8s.Create(ctx, middle)).To(Succeed(), "restored as it was")
	g.Expect(verify()).To(BeNil(), "a record restored as it was verifies again")

	// An entry added around the controller (as the controller's own
	// identity, which the webhook lets by), then the newest record gone.
	g.Expect(k8s.Update(ctx, open)).To(Succeed())
	g.Expect(verify()).To(And(HaveField("Record", open.Name), HaveField("Seq", int64(99))))
	g.Expect(k8s.Delete(ctx, open)).To(Succeed())
	g.Expect(verify()).To(And(HaveField("Record", open.Name), HaveField("Reason", ContainSubstring("head entry is missing"))))
}

// checkEvidence checks a Rollout's records after canary runs of revisions
// that were each promoted: the chain verifies against the status's head,
// and each revision's record holds its promotion started and completed
// once, and each Approval it used once.
func checkEvidence(g Gomega, ro *vigilv1.Rollout, revisions []string) {
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		recs := records(g, ro)
		rep := proof.Verify(ro.Namespace, ro.Name, cur.Status.Evidence, cur.Status.EvidenceCheckpoint, recs)
		g.Expect(rep.Broken).To(BeNil())
		g.Expect(rep.Unacknowledged).To(BeZero())
		for _, rev := range revisions {
			i := slices.IndexFunc(recs, func(r vigilv1.ReleaseRecord) bool { return r.Spec.Revision == rev })
			g.Expect(i).NotTo(BeNumerically("<", 0), "revision %s has a record", rev)
			got := entries(recs[i])
			for _, once := range []string{"Observed", "Promotion Started", "Promotion Completed"} {
				n := len(slices.DeleteFunc(slices.Clone(got), func(e string) bool { return e != once }))
				g.Expect(n).To(Equal(1), "revision %s has one %s entry: %v\nrecords: %s", rev, once, got, describeRecords(recs))
			}
			seen := map[string]bool{}
			for _, e := range recs[i].Spec.Entries {
				if e.Approval != nil {
					g.Expect(seen[e.Approval.Name]).To(BeFalse(), "Approval %s is recorded once", e.Approval.Name)
					seen[e.Approval.Name] = true
				}
			}
			g.Expect(seen).NotTo(BeEmpty(), "revision %s records the Approvals it used", rev)
		}
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
}

func TestRecordsBeyondTheLimitArePrunedAndTheRestStillVerifies(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	kubelet(t, ns, nil)
	startManager(t, nil)
	ro := newRollout(ns, "short", 1, "short:v1", weightStep(50))
	ro.Spec.ReleaseRecordLimit = ptr.To(int32(2))
	g.Expect(k8s.Create(ctx, ro)).To(Succeed())
	waitPromoted(t, ro, 20*time.Second)
	for v := 2; v <= 5; v++ {
		newImage(t, ro, fmt.Sprintf("short:v%d", v))
		waitPromoted(t, ro, 20*time.Second)
	}
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		g.Expect(cur.Status.EvidenceCheckpoint).NotTo(BeNil())
		recs := records(g, ro)
		g.Expect(len(recs)).To(BeNumerically("<=", 3), "at most the limit and the open record of the stable revision")
		rep := proof.Verify(ns, ro.Name, cur.Status.Evidence, cur.Status.EvidenceCheckpoint, recs)
		g.Expect(rep.Broken).To(BeNil())
		g.Expect(slices.ContainsFunc(recs, func(r vigilv1.ReleaseRecord) bool { return r.Spec.Revision == cur.Status.StableRevision })).To(BeTrue())
		// Without the checkpoint, what was pruned shows as missing.
		g.Expect(proof.Verify(ns, ro.Name, cur.Status.Evidence, nil, recs).Broken).NotTo(BeNil())
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
}

// describeRecords is one line per record: its name, revision and entries.
func describeRecords(recs []vigilv1.ReleaseRecord) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "\n  %s %s:", r.Name, r.Spec.Revision)
		for _, e := range r.Spec.Entries {
			fmt.Fprintf(&b, " %d:%s %s %s", e.Seq, e.Type, e.State, e.Time.Format("15:04:05.000"))
		}
	}
	return b.String()
}
