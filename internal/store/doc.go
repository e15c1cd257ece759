// Package store persists tasks and the global event log: an embedded SQLite
// database with group commit (Open) and an in-memory twin with the same
// method set (NewMemory). It stores what it is given and knows nothing of the
// task lifecycle.
package store
