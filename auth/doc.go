// Package auth guards the HTTP server with bearer tokens.
//
// # Roles
//
// A token has the role read or write; write implies read. The server's
// router decides what is guarded, so that nothing depends on matching paths
// twice: the instance mounts /api/ and /metrics behind [Authenticator.Middleware],
// and /healthz, /readyz and the web UI beside it. In a guarded handler, GET
// and HEAD need read and every other method (POST, PUT, PATCH, DELETE)
// needs write. So:
//
//   - /healthz and /readyz are always open, so that load balancers and
//     orchestrators need no secret;
//   - GET and HEAD under /api/ and GET /metrics need read;
//   - every other method under /api/ needs write;
//   - the web UI's pages and static files are open: they are shells without
//     data, and every datum and every action they show goes through the API
//     with the user's token.
//
// With anonymous_read, reads need no token; a token that is sent must still
// be valid, so that a mistyped token is reported rather than ignored.
//
// A missing or unknown token gets 401 with WWW-Authenticate: Bearer; a read
// token on a write gets 403. Both use the API's error shape,
// {"error":{"code":…,"message":…}}.
//
// # Tokens file
//
// auth.tokens_file holds hashes only, one token a line:
//
//	# role  sha256 of the token, in hex
//	write   9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//	read    60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752
//
// Blank lines and lines starting with # are ignored; anything after the hash
// is a comment. `baton auth hash` prints the line for a token. The file is
// read once at start; restart the instances (one at a time: a deploy) to
// change it. Presented
// tokens are hashed with SHA-256 and compared with every configured hash in
// constant time (crypto/subtle), so neither the comparison nor the position
// of a match leaks through timing.
//
// # Cross-site requests
//
// Writes are also protected against cross-site request forgery by
// [CrossOrigin], net/http's CrossOriginProtection (Sec-Fetch-Site and Origin checks), which
// matters most when auth is off: a page on another site must not be able to
// trigger or delete jobs through a browser on the operator's machine. The UI
// itself sends the token in the Authorization header from sessionStorage,
// never in a cookie, so a forged request would carry no credentials anyway.
//
// # Without tokens
//
// When no token is configured every request is allowed, the server logs a
// warning at start, and a listen address without a host (":8080") binds to
// 127.0.0.1 unless auth.allow_insecure_remote is true; see [ListenAddr].
package auth
