package auth

import "errors"

// Sentinel errors of Authorize; the middleware translates them to HTTP.
var (
	// ErrNoToken: the request needs a token and has none.
	ErrNoToken = errors.New("a bearer token is required")
	// ErrBadToken: the token matches no configured token.
	ErrBadToken = errors.New("the bearer token is not valid")
	// ErrForbidden: the token is valid but its role is too weak.
	ErrForbidden = errors.New("this needs a token with the write role")
)
