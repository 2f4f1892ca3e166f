// Package config loads the Data Storage configuration.
//
// # Sources and precedence
//
// A [Config] is assembled from four sources, each one overriding the one
// before it:
//
//  1. built-in defaults ([Default]);
//  2. an optional YAML file (the --config flag or CONFIG_PATH, see [ResolvePath]);
//  3. environment variables;
//  4. secret files, which supply only the values that must never sit in the
//     YAML file or the environment (database and Redis passwords, the HMAC key).
//
// [Load] does all four steps and then validates the result.
//
// # Environment variables
//
// Every key in the YAML file can be overridden by DATASTORAGE_ followed by
// its dotted path in upper case with dots replaced by underscores:
// server.maxBatchSize becomes DATASTORAGE_SERVER_MAXBATCHSIZE. Because that
// spelling is hard to read, the snake-case form DATASTORAGE_SERVER_MAX_BATCH_SIZE
// is accepted too. The list of variables is derived from the yaml tags of
// [Config], so a new key gets its variable without further work.
//
// A DATASTORAGE_ variable that matches no key is an error rather than being
// ignored: a misspelt override that silently does nothing is the kind of
// mistake that is found only during an incident.
//
// # Errors
//
// Loading does not stop at the first problem. Every unknown key, badly typed
// value and out-of-range setting is collected and returned together (joined
// with [errors.Join]), one line each, each line naming the key (and the
// variable or file line it came from) so the operator can fix everything in
// one pass. Messages never echo secret values.
//
// # Value formats
//
// Durations ([Duration]) are Go duration strings such as "90s" or "1h30m". A
// bare number is refused because it is ambiguous: "300" could mean seconds or
// milliseconds. Sizes ([ByteSize]) are a number of bytes or a number with a
// unit: "512KiB", "16MiB", "1GiB" (powers of 1024) or "10MB" (powers of 1000).
//
// # Features not built yet
//
// A key that exists in the file format before the feature behind it is
// refused with an explicit "not supported yet" error instead of being
// accepted and ignored, which would leave the operator believing, for
// example, that old events are deleted. For the same reason a
// half-configured security feature is refused: server.tls.certFile without
// keyFile (or the reverse), auth.tokenFile outside the static mode.
//
// # Database
//
// The database is given either as database.url or as host, name and user
// parts, never both. [Load] does not require a database, so commands that do
// not need one (version, verify-export) work without it; commands that do
// call [Config.RequireDatabase]. [Database.ConnString] produces the string
// handed to pgx.
package config
