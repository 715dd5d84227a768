"""HCL2 support over python-hcl2's Lark parse tree: structure, expression evaluator, functions."""
