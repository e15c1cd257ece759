// Package admission decides which queued tasks may start: it parses resource
// tags and keeps the admission queue, a pure data structure with no
// goroutines, timers, I/O or locks (the caller serialises access).
//
// # Tags
//
// A tag is "key" or "key:limit". When the part after the last colon is an
// integer it is the limit and the rest is the key ("device:emulator-5554:1"
// is key "device:emulator-5554", limit 1; "api:openai:5" is "api:openai", 5);
// otherwise the whole tag is the key and the limit defaults to 1. Surrounding
// whitespace is trimmed. A tag is invalid when it is empty, holds whitespace
// or control characters inside, is not UTF-8, has an empty colon-separated
// segment ("a:", "a:b:", ":5", "a::5"), or writes a limit that is not a
// positive int. Duplicate keys in one task name one slot; two different
// explicit limits for one key in the same task are invalid.
//
// The limit of a key is the configured limit if any (plan.yaml, daemon
// config), else the first explicit tag limit the queue saw, else 1. A tag
// disagreeing with that limit is a Conflict, reported once.
//
// # Admission
//
// A task is admitted only when the global limit and every one of its
// resources have room, all at once; a waiting task holds nothing.
//
// Fair shares: every request has an Owner (the principal that submitted
// it). Waiters are in fair order: the owner holding the fewest global slots
// first, then, between owners holding as many, and always within one owner,
// priority (higher first), then arrival. So owners that compete share the
// global limit equally, an owner alone may use all of it, and a slot that
// frees goes to the owner with the fewest; no slot is ever taken back.
// There is no head-of-line blocking: a task whose resources are free starts
// even if tasks ahead of it in that order wait on busy resources.
//
// No starvation: the head of the queue (the first waiting task in that order)
// counts the admissions that overtake it while it is the head. Once that
// count exceeds Config.StarvationBound the queue reserves, for the head, one
// global slot and one slot of each of its resources: no other task may take
// them until the reserved task is admitted or removed, and it is tried before
// every other waiter, even a fairer one that arrived later. Only one task
// holds a reservation at a time; when it is admitted, the next head may earn
// one. The order is otherwise strict: admitting a task ahead in fair order
// is not overtaking. Logical time only — no wall clock here.
//
// Waiters parked on a resource are kept per owner, and a freed slot of it
// lets each owner's first waiters there be tried, so the fairest one that
// fits is found whichever owner it belongs to.
//
// Waiters found blocked are parked on the resource that refused them and are
// looked at again only when that resource may have room (a release, a limit
// change, a cleared reservation, or Changed), so Admit does not rescan
// waiters whose resources did not change.
//
// The queue counts the slots its own admitted requests hold and decides on
// those counts alone, so it never waits on anything. Some keys may be shared
// beyond this process (Config.Shared), their holders counted by a Ledger
// that may be a network round trip away (etcd semaphores in a cluster): a
// request admitted here must then claim those slots from the Ledger, which
// the caller does outside its lock (Claims), and a refusal puts the request
// back in its place, waiting until the key changes (Refused, Changed).
// LocalLedger is a Ledger in this process's memory. The global limit is
// this queue's own concurrency cap and is counted here.
//
// # Pools
//
// A pool (Config.Pools) is a resource made of named instances, such as the
// emulators of a device farm. Each instance is an ordinary key,
// "<pool>:<instance>", with its own configured limit: a tag naming it pins
// the task to that instance. The tag "<pool>:*" asks for any one instance:
// the request waits, parked on the pool and holding nothing, until an
// instance and everything else it needs have room, and is then given one
// (Bound says which) with the same all-or-nothing, fair-order and no
// head-of-line rules as any key. Among the instances with room it takes
// the best ranked by Config.Prefer, then the least recently taken. The
// starvation reservation covers a pool as one resource: one slot of any
// instance is kept for the reserved request. A shared Ledger, when there is
// one, sees only instance keys.
//
// SetPools changes the pools while requests wait and hold (a reload): new
// instances take waiters at once; a removed instance takes no new request
// while its holders keep it, and a waiter that names it waits until it is
// declared again (never holding the starvation reservation meanwhile).
package admission
