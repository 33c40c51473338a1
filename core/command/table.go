package command

import (
	"bufio"
	"io"
	"text/tabwriter"
)

// table writes aligned columns, as every listing of the CLI prints them.
// Its output is buffered: tabwriter writes each cell and each run of
// padding on its own, which for `ipam list` of 5,000 allocations was
// 80,000 write calls.
type table struct {
	*tabwriter.Writer
	out *bufio.Writer
}

func newTable(w io.Writer) *table {
	out := bufio.NewWriter(w)
	return &table{Writer: tabwriter.NewWriter(out, 0, 4, 2, ' ', 0), out: out}
}

// Flush writes what is left of the table.
func (t *table) Flush() error {
	if err := t.Writer.Flush(); err != nil {
		return err
	}
	return t.out.Flush()
}
