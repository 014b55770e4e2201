package analysis

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/vigil-dev/vigil/outcome"
)

// DefaultMaxResponseBytes bounds one Prometheus answer.
const DefaultMaxResponseBytes = 4 << 20

// Endpoint says how to reach one Prometheus server. It holds credentials in
// memory only; String and Key never reveal them.
type Endpoint struct {
	Address            string
	BearerToken        string
	Username, Password string
	// CA is a PEM bundle that signs the server's certificate.
	CA                 string
	ServerName         string
	InsecureSkipVerify bool
	Headers            map[string]string
}

// Key identifies the endpoint, credentials included, by a hash: two
// endpoints with the same key send the same requests.
func (e Endpoint) Key() string {
	b, _ := json.Marshal(e) // a struct of strings and maps always marshals
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// String names the endpoint without its credentials.
func (e Endpoint) String() string { return e.Address }

// Range asks for a range query ending at the measurement time; each series'
// points are reduced to one value.
type Range struct {
	Window, Step time.Duration
	// Reduce is avg, min, max, last or sum.
	Reduce string
}

// Query is one PromQL query, rendered.
type Query struct {
	Text    string
	Range   *Range
	Timeout time.Duration
}

// Value is Prometheus' answer: a scalar, or one value per series.
type Value struct {
	Scalar  bool
	Samples []float64
	// Series names each sample's series, for people.
	Series []string
}

// String shows the value as status text.
func (v Value) String() string {
	if v.Scalar || len(v.Samples) == 1 {
		return formatFloat(v.Samples[0])
	}
	parts := make([]string, 0, min(len(v.Samples), 8))
	for i, f := range v.Samples {
		if i == 8 {
			parts = append(parts, fmt.Sprintf("… %d more", len(v.Samples)-8))
			break
		}
		parts = append(parts, v.Series[i]+" "+formatFloat(f))
	}
	return outcome.Shorten("["+strings.Join(parts, ", ")+"]", 1000)
}

func formatFloat(f float64) string {
	return model.SampleValue(f).String()
}

// Prometheus queries one Prometheus server.
type Prometheus struct {
	api      promv1.API
	endpoint Endpoint
	// key is endpoint.Key(), computed once: the coalescer needs it for
	// every query.
	key string
}

// NewPrometheus makes a client for e whose answers are limited to maxBytes
// (DefaultMaxResponseBytes when zero). Authentication, TLS and headers are
// set up by prometheus/common's HTTP client config.
func NewPrometheus(e Endpoint, maxBytes int64) (*Prometheus, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxResponseBytes
	}
	cfg := config.HTTPClientConfig{
		TLSConfig: config.TLSConfig{
			CA:                 e.CA,
			ServerName:         e.ServerName,
			InsecureSkipVerify: e.InsecureSkipVerify,
		},
		FollowRedirects: false,
		EnableHTTP2:     true,
	}
	if e.BearerToken != "" {
		cfg.BearerToken = config.Secret(e.BearerToken)
	}
	if e.Username != "" || e.Password != "" {
		cfg.BasicAuth = &config.BasicAuth{Username: e.Username, Password: config.Secret(e.Password)}
	}
	if len(e.Headers) > 0 {
		h := make(map[string]config.Header, len(e.Headers))
		for name, value := range e.Headers {
			h[name] = config.Header{Values: []string{value}}
		}
		cfg.HTTPHeaders = &config.Headers{Headers: h}
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", e, err)
	}
	rt, err := config.NewRoundTripperFromConfig(cfg, "vigil")
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", e, err)
	}
	client, err := api.NewClient(api.Config{Address: e.Address, RoundTripper: limitBody{rt, maxBytes}})
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", e, err)
	}
	return &Prometheus{api: promv1.NewAPI(client), endpoint: e, key: e.Key()}, nil
}

// Endpoint is the server the client queries.
func (p *Prometheus) Endpoint() Endpoint { return p.endpoint }

// Query runs q as of at. An error is always an Unknown outcome; Cause
// names its kind.
func (p *Prometheus) Query(ctx context.Context, q Query, at time.Time) (Value, error) {
	timeout := q.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		v   model.Value
		err error
	)
	if q.Range == nil {
		v, _, err = p.api.Query(ctx, q.Text, at, promv1.WithTimeout(timeout))
	} else {
		r := promv1.Range{Start: at.Add(-q.Range.Window), End: at, Step: q.Range.Step}
		v, _, err = p.api.QueryRange(ctx, q.Text, r, promv1.WithTimeout(timeout))
	}
	if err != nil {
		return Value{}, classify(err, timeout)
	}
	return toValue(v, q.Range)
}

// toValue turns Prometheus' answer into a Value.
func toValue(v model.Value, r *Range) (Value, error) {
	switch v := v.(type) {
	case *model.Scalar:
		return Value{Scalar: true, Samples: []float64{float64(v.Value)}, Series: []string{"scalar"}}, nil
	case model.Vector:
		out := Value{Samples: make([]float64, 0, len(v)), Series: make([]string, 0, len(v))}
		for _, s := range v {
			out.Samples = append(out.Samples, float64(s.Value))
			out.Series = append(out.Series, s.Metric.String())
		}
		return out, nil
	case model.Matrix:
		if r == nil {
			return Value{}, outcome.Failf(CauseBadResponse, "an instant query returned a range; set range to reduce it")
		}
		out := Value{Samples: make([]float64, 0, len(v)), Series: make([]string, 0, len(v))}
		for _, s := range v {
			points := make([]float64, 0, len(s.Values))
			for _, p := range s.Values {
				points = append(points, float64(p.Value))
			}
			if len(points) == 0 {
				continue
			}
			out.Samples = append(out.Samples, reduce(r.Reduce, points))
			out.Series = append(out.Series, s.Metric.String())
		}
		return out, nil
	default:
		return Value{}, outcome.Failf(CauseBadResponse, "unsupported answer of type %s", v.Type())
	}
}

// reduce turns a series' points into one value.
func reduce(how string, points []float64) float64 {
	switch how {
	case "min":
		return slices.Min(points)
	case "max":
		return slices.Max(points)
	case "last":
		return points[len(points)-1]
	case "sum":
		var sum float64
		for _, p := range points {
			sum += p
		}
		return sum
	default: // avg
		var sum float64
		for _, p := range points {
			sum += p
		}
		return sum / float64(len(points))
	}
}

// Causes of a measurement that produced no evidence (the reason of its
// Unknown outcome, and the reason label of the Unknown metrics), or of a
// no-data Inconclusive one.
const (
	CauseTimeout          = "Timeout"
	CauseHTTPError        = "HTTPError"
	CauseTransportError   = "TransportError"
	CauseBadQuery         = "BadQuery"
	CauseBadResponse      = "BadResponse"
	CauseResponseTooLarge = "ResponseTooLarge"
	CauseNoData           = "NoData"
	CauseNaN              = "NaN"
	CauseEvaluationError  = "EvaluationError"
	CauseInvalidQuery     = "InvalidQuery"
	CauseInvalidCondition = "InvalidCondition"
	CauseInvalidProvider  = "InvalidProvider"
)

// CauseOf names the kind of err; an error of no known kind is a transport
// error.
func CauseOf(err error) string {
	return outcome.Of(err, CauseTransportError).Reason
}

// classify gives an error of the Prometheus client its outcome and cause:
// a query Prometheus refuses (bad data, an execution error) or a 4xx is a
// Failure; a timeout, a 5xx, a bad or too large answer and a transport
// error are Unknown. A measurement is Unknown either way: only an answer
// is evidence.
func classify(err error, timeout time.Duration) error {
	var apiErr *promv1.Error
	switch {
	case errors.Is(err, errTooLarge):
		return &outcome.Error{Result: outcome.Unknown, Reason: CauseResponseTooLarge, Err: err}
	case errors.Is(err, context.DeadlineExceeded):
		return outcome.Unknownf(CauseTimeout, "no answer within %s", timeout)
	case errors.As(err, &apiErr):
		switch apiErr.Type {
		case promv1.ErrTimeout, promv1.ErrCanceled:
			return &outcome.Error{Result: outcome.Unknown, Reason: CauseTimeout, Err: err}
		case promv1.ErrBadData, promv1.ErrExec:
			return &outcome.Error{Result: outcome.Failure, Reason: CauseBadQuery, Err: err}
		case promv1.ErrBadResponse:
			return &outcome.Error{Result: outcome.Unknown, Reason: CauseBadResponse, Err: err}
		case promv1.ErrClient:
			return &outcome.Error{Result: outcome.Failure, Reason: CauseHTTPError, Err: err}
		default:
			return &outcome.Error{Result: outcome.Unknown, Reason: CauseHTTPError, Err: err}
		}
	case timedOut(err):
		return outcome.Unknownf(CauseTimeout, "no answer within %s", timeout)
	}
	return &outcome.Error{Result: outcome.Classify(err), Reason: CauseTransportError, Err: err}
}

// timedOut tells a network error that is a timeout.
func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// errTooLarge is returned by a body that passed its limit.
var errTooLarge = errors.New("the answer is larger than the response size limit")

// limitBody caps every response body of a RoundTripper.
type limitBody struct {
	next http.RoundTripper
	max  int64
}

func (l limitBody) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &cappedReader{ReadCloser: resp.Body, left: l.max}
	return resp, nil
}

type cappedReader struct {
	io.ReadCloser
	left int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// One more byte tells a body of exactly the limit from a longer one.
		var one [1]byte
		if n, _ := c.ReadCloser.Read(one[:]); n > 0 {
			return 0, errTooLarge
		}
		return c.ReadCloser.Read(p)
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.ReadCloser.Read(p)
	c.left -= int64(n)
	return n, err
}

// anyNaN reports whether a sample is NaN (0/0, say: an error ratio with
// no requests).
func anyNaN(v Value) bool {
	return slices.ContainsFunc(v.Samples, math.IsNaN)
}
