package sdktest

import "github.com/hashicorp/hcl/v2"

// hclPos is the start of a line, as if the block began there in a file.
func hclPos(line int) hcl.Pos { return hcl.Pos{Line: line, Column: 1, Byte: 0} }
