# Empty dependencies file for kiln_static.
# This may be replaced when dependencies are built.
