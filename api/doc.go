// Package api serves Baton's HTTP API on every instance. Reads come straight
// from the store; writes are validated here, for a fast and clear error, and
// then forwarded to the executor, which validates again, applies them, and
// replies.
//
// Every error body has the shape {"error":{"code":…,"message":…,"field":…}}.
package api
