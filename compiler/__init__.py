"""The compile step: AST to step graph, placement rules and versioned IR (SPEC.md §2, §4, §5)."""
