// Package promtest runs a real Prometheus server (built by `make tools`) on
// loopback for tests, scraping an exporter the test controls, with a proxy
// in front of it that can stall or fail on demand.
package promtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
)

// Binary locates the prometheus binary: $VIGIL_PROMETHEUS, which `make
// test` sets, or else the one hack/tools.sh built.
func Binary() (string, error) {
	if p := os.Getenv("VIGIL_PROMETHEUS"); p != "" {
		return p, nil
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	out, err := exec.Command(filepath.Join(root, "hack", "tools.sh"), "dir", "prometheus").Output()
	if err != nil {
		return "", fmt.Errorf("locating prometheus with hack/tools.sh: %w", err)
	}
	bin := filepath.Join(strings.TrimSpace(string(out)), "prometheus")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("prometheus is not built (%w): run `make tools`", err)
	}
	return bin, nil
}

// Server is a running Prometheus.
type Server struct {
	// URL of the server's HTTP API.
	URL  string
	cmd  *exec.Cmd
	dir  string
	done chan error
}

// ScrapeInterval is how often the server scrapes its targets.
const ScrapeInterval = time.Second

// Start starts Prometheus scraping targets (host:port on loopback) every
// ScrapeInterval, and waits until it is ready. Its log goes to log.
func Start(targets []string, log *os.File) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "vigil-prometheus-")
	if err != nil {
		return nil, err
	}
	quoted := make([]string, len(targets))
	for i, t := range targets {
		quoted[i] = fmt.Sprintf("%q", t)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: %s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
  - job_name: app
    static_configs:
      - targets: [%s]
`, ScrapeInterval, strings.Join(quoted, ", "))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting prometheus: %w", err)
	}
	s := &Server{URL: "http://" + addr, cmd: cmd, dir: dir, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		resp, err := http.Get(s.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case err := <-s.done:
			return nil, fmt.Errorf("prometheus exited before it was ready: %v", err)
		case <-ctx.Done():
			_ = s.Stop()
			return nil, errors.New("prometheus was not ready within 60s")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitFor waits until query answers with at least one sample, that is
// until the server has scraped enough to answer it.
func (s *Server) WaitFor(query string, timeout time.Duration) error {
	client, err := api.NewClient(api.Config{Address: s.URL})
	if err != nil {
		return err
	}
	papi := promv1.NewAPI(client)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		v, _, err := papi.Query(ctx, query, time.Now())
		if vec, ok := v.(model.Vector); err == nil && ok && len(vec) > 0 {
			return nil
		}
		if sc, ok := v.(*model.Scalar); err == nil && ok && sc != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no answer to %s within %s (last error: %v)", query, timeout, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// WithCleanup wraps a testing.M so that cleanup runs after the tests, for
// TestMain functions that hand m to testenv.Main, which exits.
func WithCleanup(m interface{ Run() int }, cleanup func()) interface{ Run() int } {
	return withCleanup{m, cleanup}
}

type withCleanup struct {
	m       interface{ Run() int }
	cleanup func()
}

func (w withCleanup) Run() int {
	defer w.cleanup()
	return w.m.Run()
}

// Stop kills the server and removes its data.
func (s *Server) Stop() error {
	_ = s.cmd.Process.Kill()
	<-s.done
	return os.RemoveAll(s.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Exporter publishes http_requests_total{service, revision, code} for
// services whose request rate and error ratio the test sets. Counters grow
// with wall time at the set rates, so rate() over them gives the ratio.
type Exporter struct {
	// Addr is host:port for Prometheus to scrape.
	Addr string
	srv  *http.Server

	mu     sync.Mutex
	series map[[2]string]*traffic
}

type traffic struct {
	rps, errorRatio float64
	ok, errors      float64
	last            time.Time
}

// NewExporter starts an exporter on loopback.
func NewExporter() (*Exporter, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e := &Exporter{Addr: l.Addr().String(), series: map[[2]string]*traffic{}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(e)
	e.srv = &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = e.srv.Serve(l) }()
	return e, nil
}

// Set makes service's revision serve rps requests a second, a fraction
// errorRatio of them errors (code 500).
func (e *Exporter) Set(service, revision string, rps, errorRatio float64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := [2]string{service, revision}
	t := e.series[k]
	if t == nil {
		t = &traffic{last: time.Now()}
		e.series[k] = t
	}
	t.advance(time.Now())
	t.rps, t.errorRatio = rps, errorRatio
}

func (t *traffic) advance(now time.Time) {
	dt := now.Sub(t.last).Seconds()
	t.last = now
	n := t.rps * dt
	t.errors += n * t.errorRatio
	t.ok += n * (1 - t.errorRatio)
}

var requestsDesc = prometheus.NewDesc("http_requests_total", "Requests served, by service, revision and code.",
	[]string{"service", "revision", "code"}, nil)

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) { ch <- requestsDesc }

// Collect implements prometheus.Collector.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	for k, t := range e.series {
		t.advance(now)
		ch <- prometheus.MustNewConstMetric(requestsDesc, prometheus.CounterValue, math.Floor(t.ok), k[0], k[1], "200")
		ch <- prometheus.MustNewConstMetric(requestsDesc, prometheus.CounterValue, math.Floor(t.errors), k[0], k[1], "500")
	}
}

// Close stops the exporter.
func (e *Exporter) Close() error { return e.srv.Close() }

// Proxy sits between Vigil and Prometheus on loopback. It passes requests
// through, or stalls them, or answers them with an error status, and counts
// the queries it sees.
type Proxy struct {
	// URL to give Vigil as the Prometheus address.
	URL string
	srv *http.Server

	delay   atomic.Int64 // nanoseconds
	status  atomic.Int32 // 0 passes through
	queries atomic.Int64
}

// NewProxy starts a proxy to target on loopback.
func NewProxy(target string) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{URL: "http://" + l.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0) // stalled requests the client gave up on
	p.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/v1/query") {
			p.queries.Add(1)
		}
		if d := time.Duration(p.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		if code := p.status.Load(); code != 0 {
			http.Error(w, http.StatusText(int(code)), int(code))
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = p.srv.Serve(l) }()
	return p, nil
}

// Stall delays every request by d before handling it; 0 stops stalling.
func (p *Proxy) Stall(d time.Duration) { p.delay.Store(int64(d)) }

// Fail answers every request with code; 0 passes requests through again.
func (p *Proxy) Fail(code int) { p.status.Store(int32(code)) }

// Queries is how many query requests the proxy has seen.
func (p *Proxy) Queries() int64 { return p.queries.Load() }

// Close stops the proxy.
func (p *Proxy) Close() error { return p.srv.Close() }
