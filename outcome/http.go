package outcome

import (
	"fmt"
	"net/http"
)

// HTTPStatus is the result of an HTTP answer with this status code: 2xx
// and 3xx are Success; 408, 429 and 5xx are Unknown (the server did not
// decide); every other 4xx is a Failure.
func HTTPStatus(code int) Result {
	switch {
	case code < 400:
		return Success
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return Unknown
	}
	return Failure
}

// HTTPError is an HTTP answer that was not a success.
type HTTPError struct {
	Code int
	// Status is the status line's text, such as "503 Service Unavailable".
	Status string
}

func (e *HTTPError) Error() string {
	if e.Status != "" {
		return "the server answered " + e.Status
	}
	return fmt.Sprintf("the server answered %d", e.Code)
}

// CheckResponse is nil for a 2xx answer and an *HTTPError otherwise.
func CheckResponse(resp *http.Response) error {
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return &HTTPError{Code: resp.StatusCode, Status: resp.Status}
}
