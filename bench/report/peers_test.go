package main

import "testing"

func TestKeepPeersSection(t *testing.T) {
	const section = peersBegin + "\n## Beside Asynq and River\n\n| a | b |\n" + peersEnd
	for _, tc := range []struct{ name, old, rendered, want string }{
		{"no old section", "# Aura benchmarks\nold figures\n", "# Aura benchmarks\nnew figures\n", "# Aura benchmarks\nnew figures\n"},
		{"carried over", "# Aura benchmarks\nold figures\n\n" + section + "\n", "# Aura benchmarks\nnew figures\n",
			"# Aura benchmarks\nnew figures\n\n" + section + "\n"},
		{"unpaired markers left alone", "x\n" + peersEnd + "\n" + peersBegin + "\n", "new\n", "new\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(keepPeersSection([]byte(tc.old), []byte(tc.rendered))); got != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}
