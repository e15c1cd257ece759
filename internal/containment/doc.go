// Package containment keeps every process an exec step or a CPU worker
// starts where all of them can be found and killed, including those that
// leave their process group with setsid or double-fork away from their
// parent.
//
// A Tree is one process's view: aurad and each CPU worker make one at start.
// It makes the process a child subreaper (PR_SET_CHILD_SUBREAPER), so an
// orphaned descendant is reparented to it rather than to init, and reaps
// those adopted orphans itself, by pid, never with a wait for any child that
// could steal an exit status from Go's os/exec.
//
// A Group is the processes of one exec step or one CPU worker. Where a
// writable cgroup v2 hierarchy is available (mode cgroup) each Group is a
// cgroup: its first process is cloned straight into it (clone3 with
// CLONE_INTO_CGROUP), every descendant stays in it whatever it does short of
// writing to cgroup files, and cgroup.kill ends all of them at once. Without
// one (mode subreaper) a Group is the process tree under its first process,
// found through /proc/<pid>/task/<tid>/children; a process that escapes the
// tree by outliving its parent is adopted by the Tree, which kills it at its
// next sweep. DESIGN and SECURITY.md say which guarantee holds in which mode.
package containment
