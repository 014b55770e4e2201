package outcome

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"syscall"
)

// Classify is the result of a call that returned err, found with typed
// checks only (errors.Is and errors.As over the whole chain), never by
// reading the message:
//
//   - an *Error keeps its result;
//   - an error with a StatusCode() method (go-git's HTTP transport has
//     one) is what HTTPStatus says of its code;
//   - a malformed URL, number or JSON document is a Failure: the request
//     or the answer is wrong and stays wrong;
//   - anything else is Unknown: the transport errors Transient names (a
//     timeout, a refused or reset connection, a TLS handshake that did not
//     verify, …) say nothing was learnt about the question, and neither
//     does an error of no known kind.
func Classify(err error) Result {
	var (
		e    *Error
		code interface{ StatusCode() int }
	)
	switch {
	case err == nil:
		return Success
	case errors.As(err, &e):
		return e.Result
	case errors.As(err, &code):
		return HTTPStatus(code.StatusCode())
	case malformed(err):
		return Failure
	}
	return Unknown
}

// malformed tells a request or an answer that does not parse.
func malformed(err error) bool {
	var (
		u      *url.Error
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
		num    *strconv.NumError
	)
	return errors.As(err, &u) && u.Op == "parse" || errors.As(err, &syntax) || errors.As(err, &typ) || errors.As(err, &num)
}

// Transient tells the errors of a transport that say nothing about the
// question, because it was not answered (see Classify). A domain whose
// errors of no known kind are its own Failures asks this first.
func Transient(err error) bool {
	if malformed(err) { // a *url.Error is a net.Error even when it only failed to parse
		return false
	}
	var (
		ne   net.Error
		op   *net.OpError
		dns  *net.DNSError
		cert *tls.CertificateVerificationError
		auth x509.UnknownAuthorityError
		host x509.HostnameError
		inv  x509.CertificateInvalidError
		rec  tls.RecordHeaderError
	)
	for _, target := range []error{context.Canceled, context.DeadlineExceeded, os.ErrDeadlineExceeded,
		syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE, syscall.ETIMEDOUT,
		syscall.EHOSTUNREACH, syscall.ENETUNREACH, net.ErrClosed, io.EOF, io.ErrUnexpectedEOF} {
		if errors.Is(err, target) {
			return true
		}
	}
	return errors.As(err, &ne) || errors.As(err, &op) || errors.As(err, &dns) || errors.As(err, &cert) ||
		errors.As(err, &auth) || errors.As(err, &host) || errors.As(err, &inv) || errors.As(err, &rec)
}
