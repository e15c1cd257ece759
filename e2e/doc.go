// Package e2e drives the real aurad binary over real gRPC on loopback: it
// builds aurad and auractl once, starts daemons as child processes with
// their own plan and data directories, and asserts what a user would see.
package e2e
