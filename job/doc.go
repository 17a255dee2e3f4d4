// Package job defines the job document that users create through the API and
// the schedule file, its defaults, and its validation.
//
// A Job is what the store persists and what the API returns. Validation is
// pure: it needs no store or broker, so every instance can reject bad input
// before forwarding a write, and the executor can validate again as the single
// writer.
package job
