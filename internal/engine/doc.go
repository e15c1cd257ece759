// Package engine runs one task's steps: ordering and dependencies, when,
// loops, retries, per-step timeouts and returns. Each action call runs on
// a lane (the io pool or a cpu worker) or inline; the engine itself
// schedules nothing beyond the one task it is given.
package engine
