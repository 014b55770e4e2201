package analysisrun

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vigil-dev/vigil/analysis"
	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/hack/promtest"
	"github.com/vigil-dev/vigil/hack/testenv"
)

var (
	cfg      *rest.Config
	scheme   = runtime.NewScheme()
	k8s      client.Client
	exporter *promtest.Exporter
	prom     *promtest.Server
)

func TestMain(m *testing.M) {
	ctrl.SetLogger(logr.Discard())
	var err error
	if exporter, err = promtest.NewExporter(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	exporter.Set("healthy", "v2", 2000, 0.001)
	exporter.Set("spike", "v2", 2000, 0.05)
	if prom, err = promtest.Start([]string{exporter.Addr}, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testenv.Main(promtest.WithCleanup(m, func() { _ = prom.Stop(); _ = exporter.Close() }), testenv.Connect(&cfg, scheme, &k8s, clientgoscheme.AddToScheme, vigilv1.AddToScheme))
}

// startManager runs the AnalysisRun controller until the test ends or stop
// is called.
func startManager(t testing.TB, c *analysis.Coalescer) (stop func()) {
	t.Helper()
	return testenv.StartManager(t, cfg, scheme, nil, func(_ context.Context, mgr ctrl.Manager) error {
		r := &Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("vigil-analysisrun"), Coalescer: c}
		return r.SetupWithManager(mgr)
	})
}

func newNamespace(t testing.TB) string { return testenv.Namespace(t, k8s, "analysis-test") }

const errorRate = `sum(rate(http_requests_total{service="{{args.service}}",code=~"5.."}[5s])) / sum(rate(http_requests_total{service="{{args.service}}"}[5s]))`

// errorRateMetric judges the error rate against a 1% SLO.
func errorRateMetric(address string) vigilv1.Metric {
	d := func(s string) *vigilv1.Duration { return ptr.To(vigilv1.Duration(s)) }
	return vigilv1.Metric{
		Name:             "error-rate",
		Interval:         d("1s"),
		Count:            ptr.To(int32(3)),
		SuccessCondition: "result < 0.01",
		FailureCondition: "result >= 0.01",
		UnknownLimit:     2,
		NoDataOutcome:    vigilv1.NoDataUnknown,
		Provider: vigilv1.MetricProvider{Prometheus: &vigilv1.PrometheusProvider{
			Address: address, Query: errorRate, Timeout: d("500ms"),
		}},
	}
}

func newRun(t testing.TB, ns, service string, metrics ...vigilv1.Metric) *vigilv1.AnalysisRun {
	t.Helper()
	run := &vigilv1.AnalysisRun{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: service + "-"},
		Spec: vigilv1.AnalysisRunSpec{
			Metrics: metrics,
			Args:    []vigilv1.AnalysisArgument{{Name: "service", Value: service}},
		},
	}
	if err := k8s.Create(context.Background(), run); err != nil {
		t.Fatalf("creating AnalysisRun: %v", err)
	}
	return run
}

// verdictOf waits for the run to finish and returns it.
func finished(t testing.TB, run *vigilv1.AnalysisRun, within time.Duration) *vigilv1.AnalysisRun {
	t.Helper()
	got := &vigilv1.AnalysisRun{}
	NewWithT(t).Eventually(func() vigilv1.AnalysisVerdict {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(run), got); err != nil {
			return ""
		}
		return got.Status.Verdict
	}).WithTimeout(within).WithPolling(100 * time.Millisecond).Should(Satisfy(vigilv1.AnalysisVerdict.Finished))
	return got
}

// waitForData waits until Prometheus can answer the error-rate query.
func waitForData(t testing.TB) {
	t.Helper()
	q, _ := analysis.Render(errorRate, map[string]string{"service": "healthy"})
	if err := prom.WaitFor(q, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}
