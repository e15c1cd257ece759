// Package template compiles and evaluates the {{ expr }} templates of task
// files (expr-lang expressions). It is pure: no I/O and no goroutines.
// Templates are compiled once when a plan loads and evaluated many times.
package template
