package outcome

import "net/http"

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
