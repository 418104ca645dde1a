//go:build race

package scoring

// raceEnabled: the race detector slows the randomized tests tenfold, so
// they run fewer seeds.
const raceEnabled = true
