// Package ui serves Baton's web UI at / on every instance.
//
// The pages are html/template shells embedded in the binary with hand-written
// CSS and JavaScript and no build step. They hold no data: the script in
// static/app.js reads and writes through the same JSON API as the CLI, so a
// write made on a standby's UI is forwarded to the executor like any other,
// and a 503 no_executor comes back to the page as it would to a client.
//
// # Authentication
//
// When the server has tokens, the page asks for one the first time an API
// call answers 401 and keeps it in sessionStorage (per tab, gone when the
// tab closes). Every fetch sends it as "Authorization: Bearer". Nothing is
// kept in a cookie, so a page on another site cannot make the browser send
// it; writes are additionally refused when the browser marks them
// cross-origin (see package auth).
//
// # Content security
//
// Every page is served with a Content-Security-Policy that allows scripts
// and styles from this origin only, so data rendered by the script (job
// names, error messages) cannot run as code even if it were inserted as
// HTML; the script inserts data with textContent only.
package ui
