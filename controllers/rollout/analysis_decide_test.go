package rollout

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// atAnalysis is a scope at analysis step 1 whose run (attempt 0) has the
// given verdict, with the Rollout's rollback policy set to policy.
func atAnalysis(verdict vigilv1.AnalysisVerdict, policy *vigilv1.RollbackPolicy) *scope {
	s := canaryAt(1, time.Minute, weightStep(20), analysisStep("error-rate", "svc"), weightStep(60))
	s.rollout.Spec.Rollback = policy
	name := runName(s.rollout, "new", "1", 0)
	s.rollout.Status.Analysis = &vigilv1.RolloutAnalysis{Run: name, Revision: "new", Step: ptr.To(int32(1)), Verdict: vigilv1.AnalysisRunning}
	s.runs = map[string]*vigilv1.AnalysisRun{name: {
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: vigilv1.AnalysisRunStatus{Verdict: verdict, Message: "metric error-rate: budget spent", MetricResults: []vigilv1.MetricResult{{
			Name: "error-rate", Verdict: verdict,
			Measurements: []vigilv1.Measurement{{Outcome: vigilv1.MeasurementUnknown, Reason: "Timeout: no answer within 500ms", StartedAt: metav1.NewTime(t0)}},
		}}},
	}}
	return s
}

func TestAnalysisVerdictFollowsThePolicy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		verdict vigilv1.AnalysisVerdict
		policy  *vigilv1.RollbackPolicy
		want    func(g Gomega, s *scope)
	}{
		{"Successful advances", vigilv1.AnalysisSuccessful, nil, func(g Gomega, s *scope) {
			g.Expect(*s.rollout.Status.CurrentStepIndex).To(Equal(int32(2)))
		}},
		{"Running waits", vigilv1.AnalysisRunning, nil, func(g Gomega, s *scope) {
			g.Expect(*s.rollout.Status.CurrentStepIndex).To(Equal(int32(1)))
			g.Expect(s.decided).To(BeFalse())
		}},
		{"Failed rolls back by default", vigilv1.AnalysisFailed, nil, func(g Gomega, s *scope) {
			g.Expect(s.rollout.Status.Rollback.Trigger).To(Equal(vigilv1.RollbackTriggerAnalysisFailed))
		}},
		{"Failed can pause", vigilv1.AnalysisFailed, &vigilv1.RollbackPolicy{OnFailed: vigilv1.RollbackActionPause}, func(g Gomega, s *scope) {
			g.Expect(s.rollout.Status.Rollback).To(BeNil())
			g.Expect(s.rollout.Status.Phase).To(Equal(vigilv1.RolloutPhasePaused))
		}},
		{"Inconclusive pauses by default", vigilv1.AnalysisInconclusive, nil, func(g Gomega, s *scope) {
			g.Expect(s.rollout.Status.Phase).To(Equal(vigilv1.RolloutPhasePaused))
			g.Expect(s.rollout.Status.PendingApproval.Step).To(Equal(int32(1)))
		}},
		{"Inconclusive can roll back", vigilv1.AnalysisInconclusive, &vigilv1.RollbackPolicy{OnInconclusive: vigilv1.RollbackActionRollback}, func(g Gomega, s *scope) {
			g.Expect(s.rollout.Status.Rollback.Trigger).To(Equal(vigilv1.RollbackTriggerAnalysisInconclusive))
		}},
		{"exhausted Unknown pauses by default", vigilv1.AnalysisUnknown, nil, func(g Gomega, s *scope) {
			g.Expect(s.rollout.Status.Rollback).To(BeNil())
			g.Expect(s.rollout.Status.PendingApproval).NotTo(BeNil())
			g.Expect(s.rollout.Status.Message).To(ContainSubstring("Approve step 1 to run it again"))
		}},
		{"exhausted Unknown can roll back", vigilv1.AnalysisUnknown, &vigilv1.RollbackPolicy{OnUnknownExhausted: vigilv1.RollbackActionRollback}, func(g Gomega, s *scope) {
			g.Expect(s.rollout.Status.Rollback.Trigger).To(Equal(vigilv1.RollbackTriggerAnalysisUnknown))
			g.Expect(s.rollout.Status.Rollback.Message).To(ContainSubstring("Timeout"))
		}},
		{"exhausted Unknown can retry as the next attempt", vigilv1.AnalysisUnknown, &vigilv1.RollbackPolicy{OnUnknownExhausted: vigilv1.RollbackActionRetry}, func(g Gomega, s *scope) {
			g.Expect(s.rollout.Status.Rollback).To(BeNil())
			g.Expect(s.rollout.Status.Analysis.Attempt).To(Equal(int32(1)))
			g.Expect(s.rollout.Status.Analysis.Run).To(Equal("ro-new-step1-1"))
			g.Expect(*s.rollout.Status.CurrentStepIndex).To(Equal(int32(1)))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			s := atAnalysis(tc.verdict, tc.policy)
			decide(s, evidence{reached: true})
			tc.want(g, s)
			if tc.verdict != vigilv1.AnalysisRunning {
				g.Expect(s.decided || s.rollout.Status.Phase == vigilv1.RolloutPhasePaused).To(BeTrue())
			}
		})
	}
}

func TestRetryIsBoundedThenPauses(t *testing.T) {
	g := NewWithT(t)
	s := atAnalysis(vigilv1.AnalysisUnknown, &vigilv1.RollbackPolicy{OnUnknownExhausted: vigilv1.RollbackActionRetry})
	s.rollout.Status.Analysis.Attempt = maxAttempts - 1
	decide(s, evidence{reached: true})
	g.Expect(s.rollout.Status.Phase).To(Equal(vigilv1.RolloutPhasePaused))
	g.Expect(s.rollout.Status.Analysis.Attempt).To(Equal(int32(maxAttempts - 1)))
}

func TestApprovalOfAPausedAnalysisRunsItAgain(t *testing.T) {
	g := NewWithT(t)
	s := atAnalysis(vigilv1.AnalysisUnknown, nil)
	// The reconcile before paused the step and began the wait.
	s.rollout.Status.PendingApproval = &vigilv1.PendingApproval{Revision: "new", Step: 1, Since: metav1.NewMicroTime(t0.Add(-time.Second)),
		Effect: vigilv1.EffectRunAnalysisAgain, Required: 1}
	s.approvals = []vigilv1.Approval{approval(s, "again", "new", 1, vigilv1.ApprovalApprove, time.Second)}
	decide(s, evidence{reached: true})
	g.Expect(s.rollout.Status.Analysis.Run).To(Equal("ro-new-step1-1"))
	g.Expect(*s.rollout.Status.CurrentStepIndex).To(Equal(int32(1)), "the step is run again, not skipped")
	g.Expect(s.rollout.Status.UsedApprovals).To(ConsistOf("again"))
	g.Expect(s.rollout.Status.PendingApproval).To(BeNil())
}
