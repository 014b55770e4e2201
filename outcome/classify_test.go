package outcome_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/vigil-dev/vigil/outcome"
)

// TestClassifyRealErrors classifies errors made for real on loopback, each
// checked to be the kind of error its case names before it is classified.
func TestClassifyRealErrors(t *testing.T) {
	cases := []struct {
		name string
		make func(t *testing.T) error
		is   func(error) bool
		want outcome.Result
	}{
		// Transport errors: Unknown, and Transient (gitops asks it first).
		{"dial to a closed port", dialClosedPort, errIs(syscall.ECONNREFUSED), outcome.Unknown},
		{"read deadline", readPastDeadline, errIs(os.ErrDeadlineExceeded), outcome.Unknown},
		{"reset connection", readReset, errIs(syscall.ECONNRESET), outcome.Unknown},
		{"TLS handshake with an untrusted certificate", untrustedTLS, errAs[*tls.CertificateVerificationError], outcome.Unknown},
		{"cancelled context", cancelled, errIs(context.Canceled), outcome.Unknown},
		// Answers and parse errors: never Transient.
		{"HTTP 503", status(http.StatusServiceUnavailable), code(503), outcome.Unknown},
		{"HTTP 429", status(http.StatusTooManyRequests), code(429), outcome.Unknown},
		{"HTTP 400", status(http.StatusBadRequest), code(400), outcome.Failure},
		{"HTTP 401", status(http.StatusUnauthorized), code(401), outcome.Failure},
		{"HTTP 404", status(http.StatusNotFound), code(404), outcome.Failure},
		{"a URL that does not parse", badURL, isParse, outcome.Failure},
		{"an answer that does not parse", badJSON, errAs[*json.SyntaxError], outcome.Failure},
	}
	const transportCases = 5
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			err := c.make(t)
			g.Expect(err).To(HaveOccurred())
			g.Expect(c.is(err)).To(BeTrue(), "the error is not of the kind the case names: %v (%T)", err, err)
			g.Expect(outcome.Classify(err)).To(Equal(c.want), "%v (%T)", err, err)
			g.Expect(outcome.Transient(err)).To(Equal(i < transportCases), "Transient(%v)", err)
			// Wrapped twice, as callers do, it classifies the same.
			g.Expect(outcome.Classify(wrap(err))).To(Equal(c.want))
			g.Expect(outcome.Of(wrap(err), "Fallback")).To(Equal(outcome.Outcome{Result: c.want, Reason: "Fallback", Message: wrap(err).Error()}))
		})
	}
}

func TestAnErrorWithAnOutcomeKeepsIt(t *testing.T) {
	g := NewWithT(t)
	err := outcome.Failf("RefNotFound", "branch %s does not exist", "main")
	g.Expect(outcome.Classify(wrap(err))).To(Equal(outcome.Failure))
	g.Expect(outcome.Of(wrap(err), "Other")).To(Equal(outcome.Outcome{Result: outcome.Failure, Reason: "RefNotFound", Message: wrap(err).Error()}))
	u := wrap(outcome.Unknownf("Unreachable", "no answer"))
	g.Expect(outcome.IsUnknown(u)).To(BeTrue())
	g.Expect(outcome.ReasonOf(u)).To(Equal("Unreachable"))
	g.Expect(outcome.Of(nil, "x").Result).To(Equal(outcome.Success))
	g.Expect(outcome.IsUnknown(nil)).To(BeFalse())
}

func wrap(err error) error { return errors.Join(errors.New("outer"), &wrapped{err}) }

type wrapped struct{ err error }

func (w *wrapped) Error() string { return "fetching: " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }

func errIs(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}

func errAs[T error](err error) bool {
	var target T
	return errors.As(err, &target)
}

func isParse(err error) bool {
	var u *url.Error
	return errors.As(err, &u) && u.Op == "parse"
}

func code(c int) func(error) bool {
	return func(err error) bool {
		var s *statusError
		return errors.As(err, &s) && s.StatusCode() == c
	}
}

func dialClosedPort(t *testing.T) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = http.Get("http://" + addr + "/")
	return err
}

func readPastDeadline(t *testing.T) error {
	l := listen(t)
	go func() {
		c, err := l.Accept()
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err = c.Read(make([]byte, 1))
	return err
}

func readReset(t *testing.T) error {
	l := listen(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Read(make([]byte, 1))
		c.(*net.TCPConn).SetLinger(0) // close with a RST
		c.Close()
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	<-done
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	return err
}

func untrustedTLS(t *testing.T) error {
	s := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(s.Close)
	_, err := (&http.Client{Timeout: 5 * time.Second}).Get(s.URL)
	return err
}

func status(c int) func(t *testing.T) error {
	return func(t *testing.T) error {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(c) }))
		t.Cleanup(s.Close)
		resp, err := http.Get(s.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return &statusError{resp}
	}
}

// statusError is an HTTP answer as client libraries return it: an error
// with a StatusCode method.
type statusError struct{ resp *http.Response }

func (e *statusError) Error() string   { return "the server answered " + e.resp.Status }
func (e *statusError) StatusCode() int { return e.resp.StatusCode }

func cancelled(t *testing.T) error {
	s := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(s.Close)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	_, err := http.DefaultClient.Do(req)
	return err
}

func badURL(*testing.T) error {
	_, err := http.Get("http://127.0.0.1:%zz/")
	return err
}

func badJSON(t *testing.T) error {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "{not json") }))
	t.Cleanup(s.Close)
	resp, err := http.Get(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	return json.NewDecoder(resp.Body).Decode(&v)
}

func listen(t *testing.T) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
