package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"
)

// sample is a set of durations.
type sample []time.Duration

// pct is the nearest-rank percentile p (0 < p <= 100): the smallest value
// with at least p% of the sample at or below it.
func (s sample) pct(p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := append(sample(nil), s...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	rank := int(math.Ceil(p / 100 * float64(len(c))))
	if rank < 1 {
		rank = 1
	}
	return c[rank-1]
}

func (s sample) p50() time.Duration { return s.pct(50) }
func (s sample) p99() time.Duration { return s.pct(99) }
func (s sample) max() time.Duration { return s.pct(100) }

// ms formats a duration in milliseconds.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 100:
		return fmt.Sprintf("%.1f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// table is a markdown table.
type table struct {
	title string
	head  []string
	rows  [][]string
	notes []string
}

func newTable(title string, head ...string) *table { return &table{title: title, head: head} }

func (t *table) add(cells ...any) {
	row := make([]string, len(cells))
	for i, c := range cells {
		switch v := c.(type) {
		case string:
			row[i] = v
		case time.Duration:
			row[i] = ms(v)
		default:
			row[i] = fmt.Sprint(v)
		}
	}
	t.rows = append(t.rows, row)
}

func (t *table) note(format string, args ...any) {
	t.notes = append(t.notes, fmt.Sprintf(format, args...))
}

func (t *table) write(w io.Writer) {
	if t.title != "" {
		fmt.Fprintf(w, "### %s\n\n", t.title)
	}
	fmt.Fprintf(w, "| %s |\n", strings.Join(t.head, " | "))
	seps := make([]string, len(t.head))
	for i := range seps {
		seps[i] = "---"
	}
	fmt.Fprintf(w, "| %s |\n", strings.Join(seps, " | "))
	for _, r := range t.rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = strings.ReplaceAll(c, "|", "\\|")
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	fmt.Fprintln(w)
	for _, n := range t.notes {
		fmt.Fprintf(w, "%s\n", n)
	}
	// Every table carries where, when and what it measured, so that a
	// table copied into a README or an issue can be compared with another.
	fmt.Fprintf(w, "_%s_\n\n", stamp())
}

// target is one of the targets in test/bench/README.md and what was measured.
type target struct {
	what, want, got string
	met             bool
	why             string // for a miss
}

func metStr(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}
