package traefikapi

import "errors"

// Errors returned by Client, to test with errors.Is. The returned errors
// wrap these and say what to do; none of them ever contains the configured
// password, username or header values.
var (
	// ErrServiceNotFound: Traefik has no such service (or v1 backend).
	ErrServiceNotFound = errors.New("service not found in Traefik")
	// ErrUnauthorized: Traefik's API answered 401 or 403.
	ErrUnauthorized = errors.New("traefik API refused the credentials")
	// ErrUnreachable: no answer after the retries (connection refused, DNS,
	// timeout, TLS failure, or a proxy in front answering 502/503/504).
	ErrUnreachable = errors.New("traefik API unreachable")
	// ErrTLS: the TLS handshake failed; such errors also match ErrUnreachable.
	ErrTLS = errors.New("TLS handshake with Traefik failed")
	// ErrUnexpectedAnswer: an answer that is not the JSON Traefik's API gives
	// (an HTML page, a truncated or oversized body, another schema, a 4xx/5xx).
	ErrUnexpectedAnswer = errors.New("unexpected answer from Traefik API")
)
