// Package config loads Baton's configuration and is the only package that
// knows viper: it returns a plain, typed [Config] that main splits into the
// per-package configs.
//
// # Sources
//
// [Load] layers three sources, later ones winning:
//
//  1. the defaults of [Default] (config.yaml at the repository root lists
//     every key with its default and a comment);
//  2. an optional YAML file;
//  3. environment variables named BATON_ plus the key path in upper snake
//     case: BATON_AMQP_URL sets amqp.url, BATON_LEASE_RENEW_INTERVAL sets
//     lease.renew_interval, BATON_TARGETS_SHELL_ENABLED sets
//     targets.shell.enabled. Every key has one, because every key has a
//     default. An empty variable counts as unset, as does a key left empty
//     (null) in the file.
//
// auth.tokens is a list in the file; its environment variable takes the
// string form BATON_AUTH_TOKENS="write:tok1,read:tok2" (role, colon, token;
// entries separated by commas, so a token cannot contain a comma). Prefer
// auth.tokens_file, which holds hashes only.
//
// Then Load fills the computed defaults (instance.id is hostname-pid,
// mongo.database is cluster.name) and calls [Config.Validate].
//
// # Errors
//
// Every error starts with the key it is about, so that a wrong value stops
// the start with a message that says what to fix:
//
//	lease.ttl: must be positive, got -1s
//	watchdog.interval: invalid duration "5 parsecs": use a number with a unit, such as 500ms, 5s, 10m or 720h
//	leese: unknown key (config.yaml lists every key)
//
// Unknown keys in the file are errors, so a misspelt key cannot silently
// leave its default in force. Durations are Go durations ("500ms", "5s",
// "720h"); a bare number is an error rather than nanoseconds. Load reports
// every problem at once, one per line. Error messages never contain a
// password or a token.
package config
