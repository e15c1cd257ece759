// Package docs is Aura's user documentation, in Markdown. Its Go code is
// the test that keeps the pages true: every plan key, builtin action,
// action parameter, hook point and aurad flag is documented, the task
// examples load, the state diagram matches `aurad plan graph`, and links
// between pages resolve. docs/gen writes api.md from the protos.
package docs
