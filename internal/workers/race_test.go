//go:build race

package workers

// raceEnabled: the race runtime maps terabytes of shadow memory, so an
// address-space limit cannot be tested under it.
const raceEnabled = true
