package analysis

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/vigil-dev/vigil/hack/promtest"
)

// The suite's Prometheus scrapes an exporter the tests control, through a
// proxy that can stall or fail.
var (
	exporter *promtest.Exporter
	prom     *promtest.Server
	proxy    *promtest.Proxy
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if exporter, err = promtest.NewExporter(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer exporter.Close()
	exporter.Set("healthy", "v2", 2000, 0.001)
	exporter.Set("spike", "v2", 2000, 0.05)
	if prom, err = promtest.Start([]string{exporter.Addr}, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer prom.Stop()
	if proxy, err = promtest.NewProxy(prom.URL); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer proxy.Close()
	return m.Run()
}

const errorRate = `sum(rate(http_requests_total{service="{{args.service}}",code=~"5.."}[5s])) / sum(rate(http_requests_total{service="{{args.service}}"}[5s]))`

var slo = Conditions{Success: "result < 0.01", Failure: "result >= 0.01"}

func client(t *testing.T, address string) *Prometheus {
	t.Helper()
	p, err := NewPrometheus(Endpoint{Address: address}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func rendered(t *testing.T, service string) Query {
	t.Helper()
	q, err := Render(errorRate, map[string]string{"service": service})
	if err != nil {
		t.Fatal(err)
	}
	return Query{Text: q, Timeout: 2 * time.Second}
}

// measure waits until Prometheus has enough samples to answer, then
// measures once.
func measure(t *testing.T, p *Prometheus, q Query, cond Conditions) Measurement {
	t.Helper()
	var m Measurement
	NewWithT(t).Eventually(func() string {
		m = Measure(context.Background(), nil, p, q, cond, 0, time.Now)
		return m.Cause
	}).WithTimeout(30*time.Second).WithPolling(500*time.Millisecond).ShouldNot(Equal(CauseNoData), "Prometheus has no samples yet")
	return m
}

func TestHealthyErrorRateIsSuccessful(t *testing.T) {
	g := NewWithT(t)
	m := measure(t, client(t, prom.URL), rendered(t, "healthy"), slo)
	g.Expect(m.Outcome).To(Equal(Successful), "reason %s, value %s", m.Reason, m.Value)
	g.Expect(m.Query).To(ContainSubstring(`service="healthy"`))
	g.Expect(m.Finished).NotTo(BeTemporally("<", m.Started))
}

func TestErrorSpikeFails(t *testing.T) {
	g := NewWithT(t)
	m := measure(t, client(t, prom.URL), rendered(t, "spike"), slo)
	g.Expect(m.Outcome).To(Equal(Failed))
	g.Expect(m.Reason).To(ContainSubstring("failureCondition result >= 0.01 holds"))
	g.Expect(m.Value).To(MatchRegexp(`^0\.0[4-6]`))
}

func TestRangeQueryIsReduced(t *testing.T) {
	g := NewWithT(t)
	q := rendered(t, "spike")
	q.Range = &Range{Window: 3 * time.Second, Step: time.Second, Reduce: "max"}
	m := measure(t, client(t, prom.URL), q, Conditions{Failure: "result > 0.01"})
	g.Expect(m.Outcome).To(Equal(Failed), "reason %s", m.Reason)
	q.Range = nil
	q.Text = `http_requests_total[10s]`
	m = Measure(context.Background(), nil, client(t, prom.URL), q, slo, 0, time.Now)
	g.Expect(m.Outcome).To(Equal(Unknown))
	g.Expect(m.Cause).To(Equal(CauseBadResponse))
}

func TestNoDataIsNeverSuccessful(t *testing.T) {
	g := NewWithT(t)
	q := rendered(t, "nobody-serves-this")
	m := Measure(context.Background(), nil, client(t, prom.URL), q, slo, 0, time.Now)
	g.Expect(m.Outcome).To(Equal(Unknown))
	g.Expect(m.Cause).To(Equal(CauseNoData))
	m = Measure(context.Background(), nil, client(t, prom.URL), q, Conditions{Success: slo.Success, NoData: Inconclusive}, 0, time.Now)
	g.Expect(m.Outcome).To(Equal(Inconclusive))
}

func TestInjectedArgumentCannotChangeTheQuery(t *testing.T) {
	g := NewWithT(t)
	p := client(t, prom.URL)
	// The crafted argument would, unescaped, close the matcher and add
	// "or vector(1)", which always answers 1 and would pass `result > 0.5`.
	q, err := Render(`sum(up{job="{{args.job}}"})`, map[string]string{"job": `"} or vector(1) #`})
	g.Expect(err).NotTo(HaveOccurred())
	m := Measure(context.Background(), nil, p, Query{Text: q, Timeout: 2 * time.Second}, Conditions{Success: "result > 0.5"}, 0, time.Now)
	g.Expect(m.Cause).To(Equal(CauseNoData), "Prometheus answered %s (%s)", m.Value, m.Reason)
	g.Expect(m.Outcome).To(Equal(Unknown))

	// The same query with the job that exists answers 1: the query works,
	// only the argument was neutralised.
	m = measure(t, p, Query{Text: `sum(up{job="app"})`, Timeout: 2 * time.Second}, Conditions{Success: "result > 0.5"})
	g.Expect(m.Outcome).To(Equal(Successful))
}

func TestStalledPrometheusIsUnknownAtTheTimeout(t *testing.T) {
	g := NewWithT(t)
	p := client(t, proxy.URL)
	measure(t, p, rendered(t, "healthy"), slo) // warm: the proxy works
	proxy.Stall(5 * time.Second)
	defer proxy.Stall(0)
	q := rendered(t, "healthy")
	q.Timeout = 500 * time.Millisecond
	m := Measure(context.Background(), nil, p, q, slo, 0, time.Now)
	g.Expect(m.Outcome).To(Equal(Unknown))
	g.Expect(m.Cause).To(Equal(CauseTimeout))
	g.Expect(m.Finished.Sub(m.Started)).To(BeNumerically("<", 3*time.Second))
}

func TestUnavailablePrometheusIsUnknown(t *testing.T) {
	g := NewWithT(t)
	proxy.Fail(http.StatusServiceUnavailable)
	defer proxy.Fail(0)
	m := Measure(context.Background(), nil, client(t, proxy.URL), rendered(t, "healthy"), slo, 0, time.Now)
	g.Expect(m.Outcome).To(Equal(Unknown))
	g.Expect(m.Cause).To(Equal(CauseHTTPError))
	g.Expect(m.Reason).To(ContainSubstring("503"))

	m = Measure(context.Background(), nil, client(t, "http://127.0.0.1:1"), rendered(t, "healthy"), slo, 0, time.Now)
	g.Expect(m.Outcome).To(Equal(Unknown))
	g.Expect(m.Cause).To(Equal(CauseTransportError))
}

func TestBadQueryIsUnknown(t *testing.T) {
	g := NewWithT(t)
	m := Measure(context.Background(), nil, client(t, prom.URL), Query{Text: `sum(`, Timeout: 2 * time.Second}, slo, 0, time.Now)
	g.Expect(m.Outcome).To(Equal(Unknown))
	g.Expect(m.Cause).To(Equal(CauseBadQuery))
}

func TestResponseSizeIsBounded(t *testing.T) {
	g := NewWithT(t)
	p, err := NewPrometheus(Endpoint{Address: prom.URL}, 64)
	g.Expect(err).NotTo(HaveOccurred())
	m := Measure(context.Background(), nil, p, Query{Text: `up`, Timeout: 2 * time.Second}, slo, 0, time.Now)
	g.Expect(m.Outcome).To(Equal(Unknown))
	g.Expect(m.Cause).To(Equal(CauseResponseTooLarge))
}

func TestCoalescerSendsOneQueryPerWindow(t *testing.T) {
	g := NewWithT(t)
	p := client(t, proxy.URL)
	q := rendered(t, "healthy")
	window := 2 * time.Second
	// Three past windows, each with data: wait until the oldest has some.
	var now time.Time
	g.Eventually(func() string {
		now = time.Now()
		return Measure(context.Background(), nil, p, q, slo, 0, func() time.Time { return now.Add(-3 * window) }).Cause
	}).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).ShouldNot(Equal(CauseNoData))
	at := func(d time.Duration) func() time.Time { return func() time.Time { return now.Add(d) } }

	c := NewCoalescer()
	before := proxy.Queries()
	var wg sync.WaitGroup
	outcomes := make([]Measurement, 50)
	for i := range outcomes {
		wg.Go(func() {
			outcomes[i] = Measure(context.Background(), c, p, q, slo, window, at(-window))
		})
	}
	wg.Wait()
	g.Expect(proxy.Queries() - before).To(Equal(int64(1)))
	shared := 0
	for _, m := range outcomes {
		g.Expect(m.Outcome).To(Equal(Successful))
		g.Expect(m.Value).To(Equal(outcomes[0].Value))
		if m.Shared {
			shared++
		}
	}
	g.Expect(shared).To(Equal(49))

	// Another window asks again; an error is never shared across calls.
	m := Measure(context.Background(), c, p, q, slo, window, at(-2*window))
	g.Expect(m.Shared).To(BeFalse())
	g.Expect(proxy.Queries() - before).To(Equal(int64(2)))
	proxy.Fail(http.StatusServiceUnavailable)
	m = Measure(context.Background(), c, p, q, slo, window, at(-3*window))
	g.Expect(m.Outcome).To(Equal(Unknown))
	proxy.Fail(0)
	m = Measure(context.Background(), c, p, q, slo, window, at(-3*window))
	g.Expect(m.Shared).To(BeFalse())
	g.Expect(m.Outcome).To(Equal(Successful), m.Reason)
}

func TestAuthenticationAndHeadersAreSent(t *testing.T) {
	g := NewWithT(t)
	var mu sync.Mutex
	seen := http.Header{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Clone()
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"success","data":{"resultType":"scalar","result":[1700000000,"0.001"]}}`)
	}))
	defer srv.Close()

	p, err := NewPrometheus(Endpoint{Address: srv.URL, BearerToken: "s3cret", Headers: map[string]string{"X-Scope-OrgID": "team-a"}}, 0)
	g.Expect(err).NotTo(HaveOccurred())
	m := Measure(context.Background(), nil, p, Query{Text: "vector(1)", Timeout: time.Second}, slo, 0, time.Now)
	g.Expect(m.Outcome).To(Equal(Successful), m.Reason)
	mu.Lock()
	g.Expect(seen.Get("Authorization")).To(Equal("Bearer s3cret"))
	g.Expect(seen.Get("X-Scope-OrgID")).To(Equal("team-a"))
	mu.Unlock()
	g.Expect(p.Endpoint().String()).NotTo(ContainSubstring("s3cret"))

	p, err = NewPrometheus(Endpoint{Address: srv.URL, Username: "vigil", Password: "pw"}, 0)
	g.Expect(err).NotTo(HaveOccurred())
	Measure(context.Background(), nil, p, Query{Text: "vector(1)", Timeout: time.Second}, slo, 0, time.Now)
	mu.Lock()
	g.Expect(seen.Get("Authorization")).To(Equal("Basic dmlnaWw6cHc="))
	mu.Unlock()
}

func TestTLSWithACAFromTheEndpoint(t *testing.T) {
	g := NewWithT(t)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"success","data":{"resultType":"scalar","result":[1700000000,"0.001"]}}`)
	}))
	defer srv.Close()
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))

	p, err := NewPrometheus(Endpoint{Address: srv.URL, CA: ca}, 0)
	g.Expect(err).NotTo(HaveOccurred())
	m := Measure(context.Background(), nil, p, Query{Text: "vector(1)", Timeout: time.Second}, slo, 0, time.Now)
	g.Expect(m.Outcome).To(Equal(Successful), m.Reason)

	// Without the CA the server is not trusted: Unknown, not a pass.
	p, err = NewPrometheus(Endpoint{Address: srv.URL}, 0)
	g.Expect(err).NotTo(HaveOccurred())
	m = Measure(context.Background(), nil, p, Query{Text: "vector(1)", Timeout: time.Second}, slo, 0, time.Now)
	g.Expect(m.Outcome).To(Equal(Unknown))
	g.Expect(m.Cause).To(Equal(CauseTransportError))
	g.Expect(m.Reason).To(ContainSubstring("certificate"))
}
