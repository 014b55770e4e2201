package analysisrun

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vigil-dev/vigil/analysis"
	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/hack/promtest"
)

// BenchmarkConcurrentAnalysisRuns runs 500 AnalysisRuns that share one
// query, each measuring every 5 s, and reports the Prometheus queries sent
// per interval and the CPU the test process (the controller) used. It runs
// the scenario once whatever b.N is: `make bench` runs it with -benchtime 1x.
func BenchmarkConcurrentAnalysisRuns(b *testing.B) {
	for _, coalesce := range []bool{true, false} {
		name := "coalesced"
		if !coalesce {
			name = "uncoalesced"
		}
		b.Run(name, func(b *testing.B) { benchmarkRuns(b, coalesce) })
	}
}

const (
	benchRuns     = 500
	benchInterval = 5 * time.Second
	benchWindows  = 4
)

func benchmarkRuns(b *testing.B, coalesce bool) {
	waitForData(b)
	proxy, err := promtest.NewProxy(prom.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer proxy.Close()
	var c *analysis.Coalescer
	if coalesce {
		c = analysis.NewCoalescer()
	}
	stop := startManager(b, c)
	defer stop()
	ns := newNamespace(b)
	m := errorRateMetric(proxy.URL)
	m.Interval = ptr.To(vigilv1.Duration(benchInterval.String()))
	m.Count = nil // measure until the benchmark ends
	m.Provider.Prometheus.Timeout = ptr.To(vigilv1.Duration("5s"))
	ctx := context.Background()
	unknown0 := testutil.ToFloat64(measurements.WithLabelValues(provider, string(analysis.Unknown)))
	start := time.Now()
	createRuns(b, ns, m)
	ramp := time.Since(start)
	// Align to the start of a window, as the coalescer does.
	<-time.After(time.Until(time.Now().Truncate(benchInterval).Add(benchInterval)))

	queries0 := proxy.Queries()
	measurements0 := totalMeasurements()
	cpu0 := cpuTime()
	b.ResetTimer()
	<-time.After(benchWindows * benchInterval) // the measured wall-clock window
	b.StopTimer()
	queries := proxy.Queries() - queries0
	measured := totalMeasurements() - measurements0
	cpu := cpuTime() - cpu0
	defer func() {
		// The runs go first, so the manager has nothing left to measure
		// when it stops.
		if err := k8s.DeleteAllOf(ctx, &vigilv1.AnalysisRun{}, client.InNamespace(ns)); err != nil {
			b.Error(err)
		}
		stop()
	}()

	b.ReportMetric(float64(queries)/benchWindows, "queries/interval")
	b.ReportMetric(measured/benchWindows, "measurements/interval")
	b.ReportMetric(cpu.Seconds()/(benchWindows*benchInterval).Seconds(), "cpu-cores")
	b.ReportMetric(float64(cpu.Microseconds())/measured, "cpu-µs/measurement")
	b.ReportMetric(ramp.Seconds(), "s-to-first-measurement")
	reportUnknowns(b, ns, unknown0)
}

func totalMeasurements() float64 {
	var sum float64
	for _, o := range []analysis.Outcome{analysis.Successful, analysis.Failed, analysis.Inconclusive, analysis.Unknown} {
		sum += testutil.ToFloat64(measurements.WithLabelValues(provider, string(o)))
	}
	return sum
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// createRuns creates benchRuns runs of m and waits until each has measured
// once.
func createRuns(b *testing.B, ns string, m vigilv1.Metric) {
	ctx := context.Background()
	for i := range benchRuns {
		run := &vigilv1.AnalysisRun{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("run-%03d", i)},
			Spec: vigilv1.AnalysisRunSpec{
				Metrics: []vigilv1.Metric{m},
				Args:    []vigilv1.AnalysisArgument{{Name: "service", Value: "healthy"}},
			},
		}
		if err := k8s.Create(ctx, run); err != nil {
			b.Fatal(err)
		}
	}
	// Wait until every run has measured once, then watch whole windows.
	NewWithT(b).Eventually(func() int {
		var list vigilv1.AnalysisRunList
		if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return 0
		}
		measured := 0
		for _, run := range list.Items {
			if len(run.Status.MetricResults) > 0 && len(run.Status.MetricResults[0].Measurements) > 0 {
				measured++
			}
		}
		return measured
	}).WithTimeout(2 * time.Minute).WithPolling(200 * time.Millisecond).Should(Equal(benchRuns))
}

// reportUnknowns reports the Unknown measurements since unknown0, with one
// example and the causes seen.
func reportUnknowns(b *testing.B, ns string, unknown0 float64) {
	ctx := context.Background()
	var sample vigilv1.AnalysisRunList
	if err := k8s.List(ctx, &sample, client.InNamespace(ns), client.Limit(1)); err == nil && len(sample.Items) > 0 {
		for _, m := range sample.Items[0].Status.MetricResults[0].Measurements {
			if m.Outcome == vigilv1.MeasurementUnknown {
				b.Logf("an Unknown measurement: %s", m.Reason)
				break
			}
		}
	}
	b.ReportMetric(testutil.ToFloat64(measurements.WithLabelValues(provider, string(analysis.Unknown)))-unknown0, "unknown-measurements")
	for _, cause := range []string{analysis.CauseTimeout, analysis.CauseHTTPError, analysis.CauseTransportError, analysis.CauseNoData} {
		if n := testutil.ToFloat64(unknowns.WithLabelValues(provider, cause)); n > 0 {
			b.Logf("Unknown measurements so far caused by %s: %.0f", cause, n)
		}
	}
}
