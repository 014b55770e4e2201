package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// BenchmarkEvidencePerPromotion promotes 20 revisions of one Rollout (a
// setWeight step and an approval step each) and reports what the evidence
// cost: ReleaseRecord requests (writes, and the live reads before them)
// per promotion, the time those requests took, and the size of the
// records after 20 revisions.
func BenchmarkEvidencePerPromotion(b *testing.B) {
	const revisions = 20
	g := NewWithT(b)
	ctx := context.Background()
	var mu sync.Mutex
	count := map[string]int{}
	var spent time.Duration
	for b.Loop() {
		ns := newNamespace(b)
		kubelet(b, ns, nil)
		stop := startManager(b, func(rt http.RoundTripper) http.RoundTripper {
			return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
				if !strings.Contains(r.URL.Path, "/releaserecords") {
					return rt.RoundTrip(r)
				}
				start := time.Now()
				resp, err := rt.RoundTrip(r)
				mu.Lock()
				if r.URL.Query().Get("watch") != "true" {
					count[r.Method]++
					spent += time.Since(start)
				}
				mu.Unlock()
				return resp, err
			})
		})
		ro := newRollout(ns, "ledger", 2, "ledger:v0", weightStep(50), approvalStep())
		g.Expect(k8s.Create(ctx, ro)).To(Succeed())
		waitPromoted(b, ro, 20*time.Second)
		for v := 1; v <= revisions; v++ {
			newImage(b, ro, fmt.Sprintf("ledger:v%d", v))
			rev := waitPending(b, ro, 1)
			approve(b, ro, fmt.Sprintf("ok-%d", v), rev, 1, vigilv1.ApprovalApprove)
			waitPromoted(b, ro, 20*time.Second)
		}
		checkEvidence(g, ro, nil)
		stop()
		var list vigilv1.ReleaseRecordList
		g.Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
		total, largest := 0, 0
		for _, rec := range list.Items {
			raw, err := json.Marshal(rec)
			g.Expect(err).NotTo(HaveOccurred())
			total += len(raw)
			largest = max(largest, len(raw))
		}
		promotions := float64(revisions + 1)
		b.ReportMetric(float64(count["POST"]+count["PATCH"])/promotions, "record-writes/promotion")
		b.ReportMetric(float64(count["GET"])/promotions, "record-reads/promotion")
		b.ReportMetric(float64(spent.Milliseconds())/promotions, "record-ms/promotion")
		b.ReportMetric(float64(largest), "bytes/record")
		b.ReportMetric(float64(total), "bytes-all-records")
		b.ReportMetric(float64(len(list.Items)), "records")
	}
}
