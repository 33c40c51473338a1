package supervisor

import "github.com/hashicorp/hcl/v2"

func hclPos(line, col int) hcl.Pos { return hcl.Pos{Line: line, Column: col} }
