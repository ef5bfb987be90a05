# Empty compiler generated dependencies file for test_ir.
# This may be replaced when dependencies are built.
